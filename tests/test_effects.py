import pytest
import redis

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


def test_external_effect_runs_outside_any_transaction_and_is_done_once():
    from django.db import connection

    with jobs.once("email:x:1", external=True) as first:
        assert first is True
        assert not connection.in_atomic_block  # no database lock held during the effect
    with jobs.once("email:x:1", external=True) as again:
        assert again is False
    assert Effect.objects.get(key="email:x:1").state == "done"


def test_external_effect_that_raises_can_be_tried_again():
    with pytest.raises(OSError), jobs.once("email:x:2", external=True):
        raise OSError("smtp down")

    assert not Effect.objects.filter(key="email:x:2").exists()
    with jobs.once("email:x:2", external=True) as retry:
        assert retry is True


def test_external_effect_under_way_in_another_job_makes_this_one_wait():
    import uuid

    from jobs.effects import EffectInProgress, set_current_job

    Effect.objects.create(key="email:x:3", state="started", job_id=uuid.uuid4())
    set_current_job(uuid.uuid4())
    try:
        with pytest.raises(EffectInProgress), jobs.once("email:x:3", external=True):
            pytest.fail("must not run")
    finally:
        set_current_job(None)


def test_external_effect_left_started_by_a_dead_delivery_of_the_same_job_is_taken_over():
    import uuid

    from jobs.effects import set_current_job

    job_id = uuid.uuid4()
    Effect.objects.create(key="email:x:4", state="started", job_id=job_id)
    set_current_job(job_id)
    try:
        with jobs.once("email:x:4", external=True) as first:
            assert first is True
    finally:
        set_current_job(None)
    assert Effect.objects.get(key="email:x:4").state == "done"


@pytest.mark.usefixtures("real_broker")
def test_two_deliveries_of_one_job_never_both_do_its_external_effect():
    """A retry sent while an earlier delivery of the same job still sends its email: the
    second finds the effect's lease held by a live worker and waits instead of sending."""
    import threading
    import time
    import uuid

    import dramatiq

    from jobs.effects import EffectInProgress, set_current_job

    broker = dramatiq.get_broker()
    broker.client.zadd(f"{broker.namespace}:__heartbeats__", {broker.broker_id: time.time() * 1000})
    job_id = uuid.uuid4()
    sends: list[str] = []
    inside = threading.Event()
    finish = threading.Event()

    def first_delivery() -> None:
        set_current_job(job_id)
        with jobs.once("email:x:4", external=True) as first:
            assert first
            sends.append("first")
            inside.set()
            finish.wait(10)

    thread = threading.Thread(target=first_delivery)
    thread.start()
    assert inside.wait(10)
    set_current_job(job_id)  # the same job, as its retry would be
    try:
        with pytest.raises(EffectInProgress), jobs.once("email:x:4", external=True):
            sends.append("second")
    finally:
        finish.set()
        thread.join(10)
    with jobs.once("email:x:4", external=True) as again:
        assert again is False
    set_current_job(None)
    assert sends == ["first"]
    assert Effect.objects.get(key="email:x:4").state == "done"


@pytest.mark.usefixtures("real_broker")
def test_a_lease_left_by_a_dead_worker_is_taken_over_and_the_done_mark_respected():
    import time
    import uuid

    import dramatiq

    from jobs.effects import _mark_done, set_current_job

    broker = dramatiq.get_broker()
    lease_key = f"{broker.namespace}:buzzer:effect-lease:email:x:5"
    stale = time.time() * 1000 - 60_000
    broker.client.zadd(f"{broker.namespace}:__heartbeats__", {"dead-worker": stale})
    broker.client.set(lease_key, "dead-worker|abc")
    Effect.objects.create(key="email:x:5", state="started", job_id=uuid.uuid4())
    _mark_done("email:x:5")  # it had sent the email before it died

    set_current_job(uuid.uuid4())
    try:
        with jobs.once("email:x:5", external=True) as first:
            assert first is False
    finally:
        set_current_job(None)
    assert Effect.objects.get(key="email:x:5").state == "done"
    assert not broker.client.exists(lease_key)


class _Receiver:
    """A receiver that can say whether it has an effect (a provider's API would)."""

    def __init__(self, has: bool | None) -> None:
        self.has = has
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        if self.has is None:
            raise ConnectionError("the provider's API did not answer")
        return self.has


def _left_started_by_a_dead_delivery(key: str) -> None:
    import uuid

    from jobs.effects import set_current_job

    job_id = uuid.uuid4()
    Effect.objects.create(key=key, state="started", job_id=job_id)
    set_current_job(job_id)


def test_a_check_that_finds_the_effect_done_records_it_instead_of_doing_it_again():
    from jobs.effects import set_current_job

    _left_started_by_a_dead_delivery("email:x:6")
    receiver = _Receiver(has=True)
    try:
        with jobs.once("email:x:6", external=True, check=receiver) as first:
            assert first is False
    finally:
        set_current_job(None)
    assert receiver.asked == 1
    assert Effect.objects.get(key="email:x:6").state == "done"


def test_a_check_that_does_not_find_the_effect_lets_the_delivery_do_it():
    from jobs.effects import set_current_job

    _left_started_by_a_dead_delivery("email:x:7")
    receiver = _Receiver(has=False)
    try:
        with jobs.once("email:x:7", external=True, check=receiver) as first:
            assert first is True
    finally:
        set_current_job(None)
    assert receiver.asked == 1
    assert Effect.objects.get(key="email:x:7").state == "done"


def test_a_check_that_fails_leaves_the_effect_unknown_for_a_later_delivery():
    from jobs.effects import set_current_job

    _left_started_by_a_dead_delivery("email:x:8")
    try:
        with pytest.raises(ConnectionError), jobs.once("email:x:8", external=True, check=_Receiver(has=None)):
            pytest.fail("must not run while the outcome is unknown")
    finally:
        set_current_job(None)
    assert Effect.objects.get(key="email:x:8").state == "started"


def test_the_check_is_not_asked_on_a_first_delivery_or_once_done():
    receiver = _Receiver(has=True)
    with jobs.once("email:x:9", external=True, check=receiver) as first:
        assert first is True
    with jobs.once("email:x:9", external=True, check=receiver) as again:
        assert again is False
    assert receiver.asked == 0


class AnsweringBackend:
    """An email backend over an API that can look a message up by its Message-ID."""

    accepted_ids: set[str] = set()

    def __init__(self, **kwargs: object) -> None:
        pass

    def accepted(self, message_id: str) -> bool:
        return message_id in self.accepted_ids


def test_email_accepted_asks_a_backend_that_can_answer_and_is_false_for_one_that_cannot(settings):
    message_id = jobs.message_id("email:order-confirmation:42")
    assert message_id == jobs.message_id("email:order-confirmation:42")  # stable across deliveries
    assert message_id != jobs.message_id("email:order-confirmation:43")

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert jobs.email_accepted(message_id) is False  # SMTP cannot tell: send again

    settings.EMAIL_BACKEND = f"{__name__}.AnsweringBackend"
    AnsweringBackend.accepted_ids = {message_id}
    assert jobs.email_accepted(message_id) is True
    assert jobs.email_accepted(jobs.message_id("email:order-confirmation:43")) is False


class _Flaky:
    """The broker's Redis client, except that the next scripts go wrong as told: "lost"
    runs the script and loses its answer (Redis stalled past the client's socket timeout,
    then ran it); "refused" fails before Redis sees it."""

    def __init__(self, client, *faults: str) -> None:
        self.client, self.faults = client, list(faults)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def register_script(self, source):
        script = self.client.register_script(source)

        def run(*args, **kwargs):
            fault = self.faults.pop(0) if self.faults else None
            if fault == "refused":
                raise redis.ConnectionError("Connection refused")
            result = script(*args, **kwargs)
            if fault == "lost":
                raise redis.TimeoutError("Timeout reading from socket")
            return result

        return run


@pytest.fixture
def live_worker(real_broker):
    import time

    real_broker.client.zadd(f"{real_broker.namespace}:__heartbeats__", {real_broker.broker_id: time.time() * 1000})
    return real_broker


def _leave_lease_behind(broker, monkeypatch, key: str) -> None:
    """An acquire whose answer was lost, then a release Redis refused: the lease of
    `key` names this live worker, and no block holds it."""
    monkeypatch.setattr(broker, "client", _Flaky(broker.client, "lost", "refused"))
    with pytest.raises(redis.TimeoutError), jobs.once(key, external=True):
        pytest.fail("the block ran although its lease was never confirmed")
    monkeypatch.setattr(broker, "client", broker.client.client)


@pytest.mark.parametrize("release", ["lost", "refused"])
def test_a_lease_whose_answer_was_lost_does_not_hold_the_effect_back(live_worker, monkeypatch, release):
    """Redis ran the lease's script but its answer was lost (a stall past the socket
    timeout), and the release after it failed too: the lease names this live worker
    although no block holds it. The job's next delivery, in this process, does the effect
    (without waiting for the lease's ttl, an hour), and the lease is freed after it."""
    import uuid

    from jobs.effects import set_current_job

    broker = live_worker
    lease_key = f"{broker.namespace}:buzzer:effect-lease:email:x:9"
    set_current_job(uuid.uuid4())
    try:
        monkeypatch.setattr(broker, "client", _Flaky(broker.client, "lost", release))
        with pytest.raises(redis.TimeoutError), jobs.once("email:x:9", external=True):
            pytest.fail("the block ran although its lease was never confirmed")
        monkeypatch.setattr(broker, "client", broker.client.client)
        if release == "refused":
            assert broker.client.get(lease_key).decode().startswith(f"{broker.broker_id}|")
        with jobs.once("email:x:9", external=True) as first:
            assert first is True
    finally:
        set_current_job(None)
    assert Effect.objects.get(key="email:x:9").state == "done"
    assert not broker.client.exists(lease_key)


def test_a_lease_left_behind_is_freed_by_the_next_lease_of_its_process(live_worker, monkeypatch):
    """Another process wanting the effect waits while the lease names this live worker:
    this process frees what it left behind on its next lease, whatever effect that is."""
    import uuid

    from jobs.effects import set_current_job

    broker = live_worker
    lease_key = f"{broker.namespace}:buzzer:effect-lease:email:x:11"
    set_current_job(uuid.uuid4())
    try:
        _leave_lease_behind(broker, monkeypatch, "email:x:11")
        assert broker.client.exists(lease_key)
        with jobs.once("email:x:12", external=True) as other:
            assert other is True
            assert not broker.client.exists(lease_key)
    finally:
        set_current_job(None)


def test_an_idle_worker_frees_what_it_left_behind_on_its_heartbeat(live_worker, monkeypatch):
    """A worker that left a lease behind and then runs nothing more frees it within one
    heartbeat: another process's delivery of the effect is not held back for an hour."""
    import uuid

    from jobs.claims import Heartbeat
    from jobs.effects import set_current_job
    from tests.support.waiting import wait_until

    broker = live_worker
    lease_key = f"{broker.namespace}:buzzer:effect-lease:email:x:13"
    set_current_job(uuid.uuid4())
    try:
        _leave_lease_behind(broker, monkeypatch, "email:x:13")
    finally:
        set_current_job(None)
    assert broker.client.exists(lease_key)
    heartbeat = Heartbeat(broker, interval=0.1)
    try:
        wait_until(lambda: not broker.client.exists(lease_key), timeout=5, what="the heartbeat to free the lease")
    finally:
        heartbeat.stop()
