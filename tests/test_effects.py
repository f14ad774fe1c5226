import pytest

import jobs
from jobs.effects import happened
from jobs.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def test_first_use_of_a_key_is_true_and_later_uses_false():
    with jobs.once("email:welcome:1") as first:
        assert first is True
    with jobs.once("email:welcome:1") as again:
        assert again is False
    assert happened("email:welcome:1")
    assert Effect.objects.count() == 1


def test_a_block_that_raises_leaves_no_ledger_row_so_it_can_run_again():
    with pytest.raises(OSError), jobs.once("email:welcome:2") as first:
        assert first
        raise OSError("smtp down")

    assert not happened("email:welcome:2")
    with jobs.once("email:welcome:2") as retry:
        assert retry is True
