"""The job list's search: by job id, object id, argument value or error words, each
through an index; enqueueing writes the search values without a statement of its own."""

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import jobs
from jobs.models import Job, JobValue
from jobs.search import search

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def found(term, queryset=None):
    return set(search(Job.objects.all() if queryset is None else queryset, term))


def job(**fields):
    return Job.objects.create(actor_name="send_confirmation_email", **fields)


def test_a_job_id_finds_that_job():
    wanted, other = job(), job()
    assert found(str(wanted.id)) == {wanted}
    assert found(str(wanted.id).upper()) == {wanted}
    assert other not in found(str(wanted.id))


def test_an_order_id_finds_the_jobs_of_that_order():
    order_id = str(uuid.uuid4())
    mine = [job(object_type="orders.order", object_id=order_id, kwargs={"order_id": order_id}) for _ in range(3)]
    job(object_type="orders.order", object_id=str(uuid.uuid4()))
    assert found(order_id) == set(mine)


def test_an_order_placed_writes_no_search_value_and_its_jobs_are_found_by_its_id():
    from orders import services as orders
    from orders.models import Product

    Product.objects.create(sku="BUZ-001", name="Buzzer", price="24.90", stock=5)
    order = orders.place_order(
        email="ann@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
    )
    order_jobs = set(Job.objects.filter(object_id=str(order.pk)))

    assert len(order_jobs) == 3
    assert found(str(order.pk)) == order_jobs
    assert found(str(order.pk).upper()) == order_jobs
    if connection.vendor == "sqlite":  # the object_id index finds them (migration 0009)
        assert JobValue.objects.count() == 0


def test_a_mixed_case_object_id_is_found_case_aside():
    wanted = job(object_id="Order-ABC", args=["Order-ABC"])
    job(object_id="order-abcd")
    assert found("order-abc") == {wanted}
    assert found("ORDER-ABC") == {wanted}


def test_an_argument_other_than_the_object_id_is_still_found():
    wanted = job(object_id="o-9", args=["o-9", "REF-12"])
    assert found("ref-12") == {wanted}
    assert found("o-9") == {wanted}


def test_a_plain_object_id_is_found_exactly():
    wanted = job(object_id="order-77")
    job(object_id="order-778")
    assert found("order-77") == {wanted}


def test_a_value_among_the_arguments_finds_the_job_case_aside():
    by_email = job(kwargs={"to": "Ann.Smith@Example.com", "count": 3})
    by_sku = job(args=["BUZ-001", 12])
    job(args=["BUZ-0011"], kwargs={"to": "ann.smith@example.co"})

    assert found("ann.smith@example.com") == {by_email}
    assert found("buz-001") == {by_sku}
    assert found("12") == {by_sku}


def test_a_uuid_among_the_arguments_is_found_as_well_as_the_job_with_that_id():
    dead = job()
    hook = job(args=[str(dead.id), 0])
    assert found(str(dead.id)) == {dead, hook}


def test_nested_values_long_values_and_booleans_are_not_indexed():
    job(kwargs={"parameters": {"email": "deep@example.com"}, "tags": ["listed@example.com"], "flag": True,
                "blob": "x" * 300})  # fmt: skip
    assert found("deep@example.com") == set()
    assert found("listed@example.com") == set()
    assert found("true") == set()
    assert found("x" * 300) == set()


def test_words_of_an_error_find_the_job_whatever_their_order():
    wanted = job(last_error="SMTPServerDisconnected: relay gone for order 1234")
    job(last_error="TimeoutError: relay slow")
    job()

    assert found("error: gone relay") == {wanted}
    assert found("error:1234") == {wanted}
    assert found("relay gone") == {wanted}  # a space: error words
    assert found("error:smtpserverdisconnected") == {wanted}
    assert found("error: ...") == set()


def test_the_error_index_follows_updates_and_deletes():
    first = job(last_error="ValueError: first problem")
    Job.objects.filter(pk=first.pk).update(last_error="ValueError: second problem")
    assert found("error:first") == set()
    assert found("error:second") == {first}
    Job.objects.filter(pk=first.pk).delete()
    assert found("error:second") == set()


def test_deleting_a_job_deletes_its_search_values():
    gone = job(kwargs={"to": "a@example.com"}, object_id="o-1")
    kept = job(kwargs={"to": "a@example.com"})
    Job.objects.filter(pk=gone.pk).delete()
    assert found("a@example.com") == {kept}
    assert found("o-1") == set()
    if connection.vendor == "sqlite":  # PostgreSQL indexes the job's own columns (migration 0005)
        assert set(JobValue.objects.values_list("job_id", flat=True)) == {kept.pk}


def test_search_combines_with_the_list_filters(operator):
    dead = job(status="dead", kwargs={"to": "b@example.com"})
    done = job(status="succeeded", kwargs={"to": "b@example.com"})
    client = Client()
    client.force_login(operator)

    page = client.get("/admin/jobs/job/", {"q": "b@example.com", "status__exact": "dead"}).content.decode()

    assert str(dead.id)[:8] in page
    assert str(done.id)[:8] not in page
    assert "error:" in page  # the help text explains the kinds


@jobs.actor(max_retries=0, time_limit=5_000)
def searchable(email: str, sku: str) -> None:
    pass


def test_enqueue_issues_no_statement_for_the_search_values(stub_broker):
    with CaptureQueriesContext(connection) as queries:
        enqueued = jobs.enqueue(searchable, "c@example.com", sku="MUG-001")

    assert [q["sql"] for q in queries.captured_queries if "jobvalue" in q["sql"].lower()] == []
    assert found("mug-001") == {enqueued}


def test_exact_search_reads_no_error_text():
    with CaptureQueriesContext(connection) as queries:
        list(found("someone@example.com"))
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "LIKE" not in sql and "last_error" not in sql.split("WHERE", 1)[-1]


def test_an_error_search_alone_is_counted_in_the_index_and_counts_the_same(operator):
    from jobs.admin import BoundedCountPaginator
    from jobs.search import index_count

    for n in range(7):
        job(last_error=f"ConnectionError: inventory service unavailable (try {n})")
    job(status="dead", last_error="ConnectionError: inventory service unavailable")
    job(last_error="TimeoutError: analytics collector did not answer")
    alone = search(Job.objects.all(), "error: inventory unavailable").order_by("-created_at")
    with_filter = search(Job.objects.filter(status="dead"), "error: inventory unavailable")

    assert BoundedCountPaginator(alone, 100).count == 8
    assert BoundedCountPaginator(with_filter, 100).count == 1  # another condition: the usual count
    assert index_count(with_filter, 100) is None
    if connection.vendor == "sqlite":
        assert index_count(alone, 100) == 8
        assert index_count(alone, 5) == 5  # capped like the usual count
    else:
        assert index_count(alone, 100) is None

    client = Client()
    client.force_login(operator)
    page = client.get("/admin/jobs/job/", {"q": "error: inventory unavailable"}).content.decode()
    assert "8 jobs" in page


def test_the_short_id_the_list_shows_finds_the_job():
    wanted = job()
    job()
    short = str(wanted.id)[:8]
    assert found(short) == {wanted}
    assert found(short.upper()) == {wanted}
    carrier = job(kwargs={"code": short})  # an argument with that value is found as well
    assert found(short) == {wanted, carrier}


def test_an_actor_name_finds_that_actors_jobs():
    email = job()
    stock = Job.objects.create(actor_name="update_inventory")
    assert found("update_inventory") == {stock}
    assert found("send_confirmation_email") == {email}
