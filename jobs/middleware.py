"""Dramatiq middleware: Buzzer's retry defaults and the tracking that keeps each Job row
true (claimed on start, attempts counted, result or error recorded, dead when out of
retries or permanently failed, never run again once finished)."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import traceback
import uuid
from typing import Any

import dramatiq
from django.conf import settings
from django.utils import timezone
from dramatiq.middleware import Middleware, SkipMessage
from dramatiq.middleware import Retries as DramatiqRetries
from dramatiq.middleware import TimeLimit as DramatiqTimeLimit

from config import logging as buzzer_logging
from jobs.claims import CANCELLED, job_key, start_gate
from jobs.effects import set_current_job
from jobs.waits import take_next_run
from jobs.writer import Finished, Started

logger = logging.getLogger(__name__)

ERROR_LIMIT = 2000
TRACEBACK_LIMIT = 20000


class Retries(DramatiqRetries):
    """Dramatiq's retries with Buzzer's defaults: a few retries with exponential
    backoff and jitter instead of 20 retries over five weeks.

    A job that failed because the database did not answer, or because another
    delivery is doing its external effect right now (`jobs.infra`), is not at fault: it
    goes back to the queue as the same attempt, after a short backoff (capped at
    BUZZER_WAIT_MAX_BACKOFF_MS), without using up a retry, up to BUZZER_WAIT_LIMIT times.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_retries", settings.BUZZER_MAX_RETRIES)
        kwargs.setdefault("min_backoff", settings.BUZZER_MIN_BACKOFF_MS)
        kwargs.setdefault("max_backoff", settings.BUZZER_MAX_BACKOFF_MS)
        super().__init__(**kwargs)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        from jobs.cancellation import Cancelled

        if isinstance(exception, Cancelled):
            return  # cancelled while it ran: it ends here, no retry
        if exception is not None and not message.failed and self._wait(broker, message, exception):
            return
        super().after_process_message(broker, message, result=result, exception=exception)

    def _wait(self, broker: dramatiq.Broker, message: Any, exception: BaseException) -> bool:
        from jobs.claims import claims_for, release_later
        from jobs.effects import EffectInProgress
        from jobs.infra import is_database_unavailable

        # Redis errors keep the ordinary retry: with Redis away the claim cannot be released,
        # and a new attempt number is what lets the next delivery run.
        if not (isinstance(exception, EffectInProgress) or is_database_unavailable(exception)):
            return False
        waits = message.options.get("buzzer_waits", 0)
        if waits >= settings.BUZZER_WAIT_LIMIT:
            return False  # so long that it counts as the job's own failure after all
        claim = getattr(message, "_buzzer_claim", None)
        if claim is not None:
            try:
                claims_for(broker).release(*claim)
            except Exception:  # noqa: BLE001 - Redis away too: the heartbeat thread releases it later
                logger.warning("Could not release the claim of job %s yet", message.message_id)
                release_later(claim)
        backoff = min(settings.BUZZER_WAIT_MAX_BACKOFF_MS, settings.BUZZER_WAIT_MIN_BACKOFF_MS * 2 ** min(waits, 20))
        hinted = getattr(exception, "delay_ms", None)
        if hinted is not None:
            backoff = hinted
        delay = int(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
        message.options["buzzer_waits"] = waits + 1
        flow_control = isinstance(exception, EffectInProgress)
        error, tb = describe(exception)
        # Waiting for a busy effect or endpoint is flow control: one line at INFO, no
        # traceback anywhere. An unavailable database is worth a warning.
        message._buzzer_waiting = (error, "" if flow_control else tb)
        (logger.info if flow_control else logger.warning)(
            "Job %s (%s) waits %d ms and runs again as the same attempt: %s",
            message.message_id,
            message.actor_name,
            delay,
            str(exception) if flow_control else error,
            extra={"wait_ms": delay, "waits": waits + 1, "reason": "busy" if flow_control else "database"},
        )
        broker.enqueue(message, delay=delay)
        return True


class TimeLimit(DramatiqTimeLimit):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("time_limit", settings.BUZZER_TIME_LIMIT_MS)
        super().__init__(**kwargs)


def describe(exception: BaseException) -> tuple[str, str]:
    error = f"{type(exception).__name__}: {exception}"[:ERROR_LIMIT]
    if isinstance(exception, dramatiq.Retry):
        return error, ""  # an actor asking to be retried says why; where it asked is no news
    tb = "".join(traceback.format_exception(exception, limit=30))[-TRACEBACK_LIMIT:]
    return error, tb


class Isolation:
    """One job at a time per worker process among the suspects: jobs whose worker died
    while running them. When a worker dies, every job it was running is taken over
    elsewhere and counted as a crash, though at most one of them was the cause; the next
    death counts again, and the second count sends a job to the dead-letter queue. If
    two suspects ran side by side, a poison job would take its innocent neighbour with it
    twice. Run one suspect at a time, and claim it only once it holds the lock: a suspect
    waiting here holds no claim and is never blamed. Jobs that never crashed run as
    usual beside a suspect (a first count does no harm: the poison is dead-lettered at
    that death's redelivery)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = threading.local()

    def acquire(self) -> None:
        self._lock.acquire()
        self._held.locked = True

    def release(self) -> None:
        if getattr(self._held, "locked", False):
            self._held.locked = False
            self._lock.release()


class JobTracking(Middleware):
    """Keeps the `jobs.Job` row of every message true.

    Before a job runs, its delivery claims it in Redis (`jobs.claims`): a duplicate of an
    attempt that is running or done is skipped, a redelivery after its worker died runs
    again, and a job that keeps killing its worker goes to the dead-letter queue. Starts
    and finishes are reported to the process's batch writer (`jobs.writer`), which the
    worker threads never wait for.
    """

    def __init__(self) -> None:
        self._writer: Any = None
        self._claims: Any = None
        self._heartbeat: Any = None
        self._listener: Any = None
        self._lock = threading.Lock()
        self._isolation = Isolation()
        self._stopping = threading.Event()

    def _tools(self, broker: dramatiq.Broker) -> tuple[Any, Any]:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    from jobs.claims import CancelListener, Heartbeat, claims_for
                    from jobs.stats import recorder_for
                    from jobs.writer import JobWriter

                    self._claims = claims_for(broker)
                    if getattr(broker, "client", None) is not None:
                        self._heartbeat = Heartbeat(broker, settings.BUZZER_HEARTBEAT_SECONDS)
                        # Also with claims at start: a cancel of a job claimed here then
                        # gets "started" at once, instead of after its wait for an answer.
                        self._listener = CancelListener(broker, start_gate(broker))
                    self._writer = JobWriter(on_written=recorder_for(broker))
        return self._writer, self._claims

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._tools(broker)  # start beating before the first message
        self._watch_for_stop()

    def _watch_for_stop(self) -> None:
        """Know of a SIGTERM at once. Dramatiq's worker process only notices it within a
        second (its main thread sleeps in 1 s steps), and until then a worker thread that
        finishes a job starts the next one; from the signal on, no job starts here."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if not callable(previous):  # not Dramatiq's handler: leave the default alone
                continue

            def on_stop(number: int, frame: Any, previous: Any = previous) -> None:
                if number == signal.SIGHUP and self._stopping.is_set():
                    # A reload's watcher sends a SIGHUP per file event, and one save is often
                    # two: Dramatiq takes a second signal for "kill now", and its sys.exit
                    # from the handler, amid the graceful stop, could leave the process
                    # neither stopped nor restarted. A SIGTERM again still kills.
                    logger.info("Signal %d again: this worker process is already stopping", number)
                    return
                self._stopping.set()
                logger.warning(
                    "Signal %d: no job starts in this worker process from now on (at %.6f)", number, time.time()
                )
                previous(number, frame)

            signal.signal(signum, on_stop)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        options = message.options
        claimed = getattr(message, "_buzzer_claimed", None)  # claimed when its consumer fetched it
        if self._stopping.is_set() and "redis_message_id" in options and hasattr(broker, "client"):
            # Stopping: hand it back to its queue for another worker (the ack that follows
            # the skip then finds it no longer fetched here and leaves it queued).
            if claimed is not None:
                self._hand_back(broker, message, self._tools(broker)[1], claimed)
            else:
                broker.do_requeue(message.queue_name, options["redis_message_id"])
                raise SkipMessage("the worker is stopping: handed back to the queue")
        try:
            job_id = uuid.UUID(message.message_id)
        except ValueError:
            logger.warning("Message %s has no job id; running it untracked", message.message_id)
            return
        writer, claims = self._tools(broker)
        attempt = options.get("retries", 0) + 1
        worker = getattr(broker, "broker_id", "") or f"stub-{id(broker)}"
        generation = options.get("buzzer_generation", 0)
        job_text = str(job_id)
        key = job_key(job_text, generation)
        outcome = getattr(message, "_buzzer_claim_outcome", None)
        if outcome is None:
            outcome = claims.claim(key, attempt, worker)
        elif claimed is not None and not start_gate(broker).start(key):
            outcome = CANCELLED  # a cancel reached this process before the job started
        if outcome == CANCELLED:
            logger.info("Job %s was cancelled: this delivery is skipped", job_id)
            writer.finished(
                Finished(
                    job_id,
                    attempt,
                    "cancelled",
                    timezone.now(),
                    actor_name=message.actor_name,
                    queue_name=message.queue_name.removesuffix(".DQ"),
                    worker=worker,
                    generation=generation,
                )
            )
            raise SkipMessage(f"job {job_id} was cancelled")
        if outcome is False:
            logger.info("Job %s attempt %d is running or done elsewhere: this delivery is skipped", job_id, attempt)
            raise SkipMessage(f"job {job_id} attempt {attempt} is already running or done")
        if outcome is True and self._stopping.is_set() and "redis_message_id" in options and hasattr(broker, "client"):
            # The signal came while this thread waited for its claim: hand it back too.
            self._hand_back(broker, message, claims, (key, attempt, worker))
        message._buzzer_claim = (key, attempt, worker)  # released if it must wait (Retries)
        if isinstance(outcome, str):  # redelivered after the worker that held it died
            dead_worker = outcome.removeprefix("dead:")
            self._isolation.acquire()  # the claim is taken over only once no other suspect runs here
            crashes = 0 if _finished(job_id) else claims.take_over(key, attempt, dead_worker, worker)
            if not crashes:
                raise SkipMessage(f"job {job_id} is finished or was taken over")
            if crashes >= settings.BUZZER_MAX_WORKER_CRASHES:
                error = f"The job's worker died {crashes} times while running it (killed, out of memory?)."
                self._dead(message, job_id, attempt, worker, error)
                _record_action(job_id, "crash_loop", error)
                raise SkipMessage(f"job {job_id} keeps killing its worker")
            logger.warning(
                "Job %s: worker %s died during attempt %d; running it again (one suspect at a time)",
                job_id,
                dead_worker,
                attempt,
            )
            _record_action(job_id, "recover", f"Worker {dead_worker} died during attempt {attempt}; run again.")
            message._buzzer_suspect = key
        message._buzzer_attempt = attempt
        message._buzzer_job_id = job_id
        message._buzzer_started = started = timezone.now()
        actor_name, queue_name = message.actor_name, message.queue_name
        request_id = options.get("buzzer_request_id")
        if request_id:
            buzzer_logging.bind_job(
                job_id=job_text, actor=actor_name, attempt=attempt, queue=queue_name, request_id=request_id
            )
        else:
            buzzer_logging.bind_job(job_id=job_text, actor=actor_name, attempt=attempt, queue=queue_name)
        set_current_job(job_id, generation, attempt)
        writer.started(
            Started(
                job_id=job_id,
                attempt=attempt,
                worker=worker,
                at=started,
                actor_name=actor_name,
                queue_name=queue_name.removesuffix(".DQ"),
                args=list(message.args),
                kwargs=dict(message.kwargs),
            )
        )

    def _hand_back(self, broker: dramatiq.Broker, message: Any, claims: Any, claim: tuple[str, int, str]) -> None:
        """Give a claimed job back to its queue, not started, because the worker is
        stopping. Without the claim released, another worker would skip it as running
        here; if Redis does not take the release, the job runs here after all."""
        try:
            released = claims.release(*claim)
        except Exception:
            logger.warning("Could not release job %s to hand it back; running it here", claim[0], exc_info=True)
            return
        if not released:  # another delivery holds it now: that one runs it
            raise SkipMessage(f"job {claim[0]} is no longer claimed here")
        broker.do_requeue(message.queue_name, message.options["redis_message_id"])
        raise SkipMessage("the worker is stopping: handed back to the queue")

    def _dead(self, message: Any, job_id: uuid.UUID, attempt: int, worker: str, error: str) -> None:
        message.fail()  # the consumer then puts it in Dramatiq's dead-letter set
        message._buzzer_recorded = True
        self._writer.finished(
            Finished(
                job_id,
                attempt,
                "dead",
                timezone.now(),
                error=error,
                actor_name=message.actor_name,
                queue_name=message.queue_name.removesuffix(".DQ"),
                worker=worker,
                broker_message_id=message.options.get("redis_message_id", ""),
                generation=message.options.get("buzzer_generation", 0),
            )
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        from jobs.cancellation import Cancelled

        self._isolation.release()
        suspect = getattr(message, "_buzzer_suspect", None)
        if suspect is not None:
            # It ran to its end (success or error), so it did not kill its worker: forget
            # its crash, or a later death that loses this outcome's unwritten row would
            # count it a second time and dead-letter a job that never crashed anything.
            try:
                self._tools(broker)[1].clear_crashes(suspect)
            except Exception:
                logger.warning("Could not clear the crash count of job %s", message.message_id, exc_info=True)
        attempt = getattr(message, "_buzzer_attempt", None)
        if attempt is None:
            return
        set_current_job(None)
        now = timezone.now()
        waiting = getattr(message, "_buzzer_waiting", None)
        if exception is None and not message.failed:
            outcome = "succeeded"
        elif isinstance(exception, Cancelled):
            outcome = "cancelled"
        elif waiting is not None:  # sent again as the same attempt (Retries): not a failed attempt
            outcome = "waits"
        else:
            # Retries (whose hook ran just before this one) has decided: failed means no more tries.
            outcome = "dead" if message.failed else "failed"
        self._log_outcome(message, outcome, now)
        writer, _ = self._tools(broker)
        options = message.options
        common = {
            "actor_name": message.actor_name,
            "queue_name": message.queue_name.removesuffix(".DQ"),
            "worker": getattr(broker, "broker_id", ""),
            "started_at": message._buzzer_started,
            "enqueued_ms": int(options.get("buzzer_ready_ms") or message.message_timestamp),  # jobs.waits
        }
        job_id = message._buzzer_job_id
        if outcome == "succeeded":
            writer.finished(Finished(job_id, attempt, "succeeded", now, **common))
            return
        generation = options.get("buzzer_generation", 0)
        if outcome == "cancelled":
            writer.finished(Finished(job_id, attempt, "cancelled", now, generation=generation, **common))
            return
        next_at = take_next_run(message.message_id)
        if outcome == "waits":
            error, tb = waiting
            finish = Finished(job_id, attempt, "retrying", now, error=error, traceback=tb, counted=False, **common)
            finish.next_at = next_at
            writer.finished(finish)
            return
        error, tb = describe(exception) if exception else ("The message failed.", "")
        if outcome == "dead":
            status, rid = "dead", options.get("redis_message_id", "")
        else:
            status, rid = "retrying", ""
        writer.finished(
            Finished(
                job_id,
                attempt,
                status,
                now,
                error=error,
                traceback=tb,
                broker_message_id=rid,
                generation=generation,
                next_at=next_at,
                **common,
            )
        )

    @staticmethod
    def _log_outcome(message: Any, outcome: str, now: Any) -> None:
        """One line per finished attempt, with the ids bound at its start; then unbind."""
        try:
            if outcome == "succeeded" and not logger.isEnabledFor(logging.INFO):
                return
            duration_ms = round((now - message._buzzer_started).total_seconds() * 1000, 1)
            (logger.info if outcome == "succeeded" else logger.warning)(
                "Job %s %s in %.1f ms",
                message.message_id,
                outcome,
                duration_ms,
                extra={"outcome": outcome, "duration_ms": duration_ms},
            )
        finally:
            buzzer_logging.unbind_job()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._isolation.release()
        claimed = getattr(message, "_buzzer_claimed", None)
        if claimed is not None:  # skipped before it passed the start gate (an age limit): not waiting any more
            start_gate(broker).let_go([claimed[0]])
        if message.failed and not getattr(message, "_buzzer_recorded", False):
            # An earlier middleware gave up on it and skipped it (Dramatiq's AgeLimit runs
            # before this one): Dramatiq dead-letters it, so must the row.
            try:
                job_id = uuid.UUID(message.message_id)
            except ValueError:
                return
            self._tools(broker)
            attempt = message.options.get("retries", 0) + 1
            max_age = message.options.get("max_age") or "its"
            self._dead(
                message,
                job_id,
                attempt,
                getattr(broker, "broker_id", ""),
                f"The message exceeded its age limit ({max_age} ms) before it could run.",
            )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            heartbeat, self._heartbeat = self._heartbeat, None
            listener, self._listener = self._listener, None
        if heartbeat is not None:
            heartbeat.stop()
        if listener is not None:
            listener.stop()
        if writer is not None:
            writer.close()

    def flush(self) -> None:
        """Wait until every reported state is written (for tests and shutdown)."""
        if self._writer is not None:
            self._writer.flush()


def _finished(job_id: uuid.UUID) -> bool:
    from jobs.models import Job

    return Job.objects.filter(pk=job_id, status__in=Job.FINISHED).exists()


def _record_action(job_id: uuid.UUID, kind: str, reason: str) -> None:
    from jobs.models import Job, JobAction

    if Job.objects.filter(pk=job_id).exists():
        JobAction.objects.create(job_id=job_id, kind=kind, reason=reason)
