"""Lifecycle hooks: a business object that hangs on a job follows the job's state instead
of keeping books of its own.

    @jobs.on_dead(generate_report)
    def report_failed(job: Job) -> None: ...

- `on_dead`: the job is dead for good (out of retries, a `PermanentError`, a crash loop,
  an age limit). The worker's batch writer writes a `run_lifecycle_hooks` job in the same
  transaction as the dead row, so the hook runs on a worker, with retries, once per
  death (a later death after a Retry is another generation, another run); it is skipped
  if the job was retried or discarded before it ran.
- `on_retry`, `on_discard`: an operator retried or discarded the dead job
  (`jobs.dlq`). The hook runs inside the operator's transaction: the business object
  changes with the job, or neither does.
- `on_cancel`: the job was cancelled (`jobs.cancel`). A waiting job's hooks run inside
  the cancelling transaction; a running job that stops at its checkpoint (or a delivery
  refused because its job was cancelled) has its hooks run on a worker, like `on_dead`.

Hooks get the `Job` row and must be safe to run twice, like every actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hook = Callable[[Any], None]
EVENTS = ("dead", "retry", "discard", "cancel")
_hooks: dict[tuple[str, str], list[Hook]] = {}


def _registrar(event: str) -> Callable[[Any], Callable[[Hook], Hook]]:
    def for_actor(actor: Any) -> Callable[[Hook], Hook]:
        name = actor if isinstance(actor, str) else actor.actor_name

        def register(hook: Hook) -> Hook:
            hooks = _hooks.setdefault((name, event), [])
            if hook not in hooks:
                hooks.append(hook)
            return hook

        return register

    for_actor.__doc__ = f"Decorator: call the function with the Job when a job of `actor` is {event}."
    return for_actor


on_dead = _registrar("dead")
on_retry = _registrar("retry")
on_discard = _registrar("discard")
on_cancel = _registrar("cancel")


def hooks_for(actor_name: str, event: str) -> list[Hook]:
    return list(_hooks.get((actor_name, event), ()))


def run(event: str, job: Any) -> None:
    for hook in hooks_for(job.actor_name, event):
        hook(job)
