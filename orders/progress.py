"""What the customer reads about an order's background work: a few steps in plain
words (the confirmation e-mail, the stock), never actor names, queues or job states.
Internal work (analytics, webhooks) is not shown to customers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from jobs.models import Job
from jobs.services import jobs_for
from orders.models import Order

S = Job.Status

# How far a job got, in the few states a customer cares about.
STATES: dict[str, str] = {
    S.PENDING: "waiting",
    S.SCHEDULED: "waiting",
    S.ENQUEUED: "waiting",
    S.RUNNING: "working",
    S.RETRYING: "delayed",
    S.SUCCEEDED: "done",
    S.DEAD: "failed",
    S.DISCARDED: "stopped",
    S.CANCELLED: "stopped",
}


@dataclass(frozen=True)
class StepKind:
    key: str
    label: str
    words: dict[str, str]  # state -> what the customer reads


STEPS: dict[str, StepKind] = {
    "send_confirmation_email": StepKind(
        "email",
        "Confirmation e-mail",
        {
            "waiting": "on its way",
            "working": "being sent",
            "delayed": "delayed, we keep trying",
            "done": "sent",
            "failed": "could not be sent — we are on it",
            "stopped": "not sent — write to us if you need it",
        },
    ),
    "update_inventory": StepKind(
        "stock",
        "Your items",
        {
            "waiting": "being set aside",
            "working": "being set aside",
            "delayed": "delayed, we keep trying",
            "done": "set aside for you",
            "failed": "delayed — we are on it",
            "stopped": "delayed — we are on it",
        },
    ),
}


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    state: str
    text: str


def customer_steps(jobs: Iterable[Job]) -> list[Step]:
    steps = []
    for job in jobs:
        kind = STEPS.get(job.actor_name)
        if kind is None:
            continue
        state = STATES.get(job.status, "waiting")
        steps.append(Step(kind.key, kind.label, state, kind.words[state]))
    return steps


def summary(steps: list[Step]) -> str:
    states = {step.state for step in steps}
    if states & {"failed", "stopped"}:
        return "Your order is placed and paid. Something went wrong on our side with what follows: we are on it."
    if steps and states <= {"done"}:
        return "All done: your order is confirmed and your items are set aside."
    if "delayed" in states:
        return "Your order is placed and paid. Some of what follows is delayed: we keep trying."
    return "Your order is placed and paid. We are confirming it now: this page updates itself."


def order_progress(order: Order, *, staff: bool = False) -> dict[str, Any]:
    """The order page's status (and its JSON): the customer's steps, a summary, whether
    every job is final (the page stops polling) and, for staff, the jobs themselves."""
    jobs = list(jobs_for(order))
    finished = all(job.status in Job.FINISHED for job in jobs)
    steps = customer_steps(jobs)
    document: dict[str, Any] = {
        "finished": finished,
        "summary": summary(steps),
        "steps": [asdict(step) for step in steps],
    }
    if staff:
        document["jobs"] = [
            {
                "id": str(job.id),
                "actor": job.actor_name,
                "queue": job.queue_name,
                "status": job.status,
                "attempts": job.attempts,
            }
            for job in jobs
        ]
    return document
