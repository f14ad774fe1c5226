"""The worker topology: which groups of worker processes consume which queues.

`BUZZER_WORKER_GROUPS` (or `manage.py runworkers --groups`) lists groups as
"QUEUES:PROCESSESxTHREADS", comma-separated: QUEUES is one queue name, several joined by
"+", or "*" for every queue no other group names. The default,
"*:2x4,premium:1x2,reports:1x2,webhooks:1x16", gives standard work 2 processes of 4
threads, and premium jobs, reports and webhook deliveries workers of their own.

Dramatiq's Redis broker serves each queue first in, first out, and a worker that
consumes several queues prefetches from all of them into one pool of threads: a premium
job fetched by a worker whose threads are busy waits behind standard ones. Capacity that
standard work can never take is the only guarantee, hence one `rundramatiq` per group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

REST = "*"
_ENTRY = re.compile(r"^(?P<queues>[^:]+):(?P<processes>\d+)x(?P<threads>\d+)$")


class TopologyError(ValueError):
    """A worker-group specification that cannot be started as written."""


@dataclass(frozen=True)
class WorkerGroup:
    queues: tuple[str, ...]  # the queue names as written, or ("*",)
    processes: int
    threads: int

    @property
    def name(self) -> str:
        return "+".join(self.queues)


def parse(spec: str) -> list[WorkerGroup]:
    """The groups of a spec such as "*:2x4,premium:1x2", checked for form (not yet against the queues)."""
    groups = []
    for raw in spec.split(","):
        entry = raw.strip().replace(" ", "")
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise TopologyError(f"worker group {raw.strip()!r}: expected QUEUES:PROCESSESxTHREADS, e.g. premium:1x2")
        queues = tuple(q for q in match["queues"].split("+") if q)
        processes, threads = int(match["processes"]), int(match["threads"])
        if not queues or (REST in queues and len(queues) > 1):
            raise TopologyError(f"worker group {entry!r}: name queues joined by '+', or '*' alone")
        if processes < 1 or threads < 1:
            raise TopologyError(f"worker group {entry!r}: needs at least 1 process and 1 thread")
        groups.append(WorkerGroup(queues, processes, threads))
    if not groups:
        raise TopologyError("no worker group given")
    return groups


def resolve(groups: list[WorkerGroup], known: Iterable[str]) -> list[WorkerGroup]:
    """The groups with "*" replaced by the queues no other group names.

    Refuses what would silently leave work undone or shared: a queue named twice, a
    queue no actor uses and BUZZER_QUEUES does not list (a typo), a known queue no group
    consumes, a "*" left with nothing to consume."""
    known_queues = sorted(set(known))
    named: dict[str, WorkerGroup] = {}
    rest = [group for group in groups if group.queues == (REST,)]
    if len(rest) > 1:
        raise TopologyError("only one worker group may be '*'")
    for group in groups:
        for queue in group.queues:
            if queue == REST:
                continue
            if queue in named:
                raise TopologyError(f"queue {queue!r} is in two worker groups: each queue needs workers of its own")
            if queue not in known_queues:
                raise TopologyError(
                    f"queue {queue!r} of worker group {group.name!r} is neither in BUZZER_QUEUES nor used by an actor"
                )
            named[queue] = group
    left = tuple(queue for queue in known_queues if queue not in named)
    if rest and not left:
        raise TopologyError("the '*' worker group has no queue left to consume")
    if left and not rest:
        raise TopologyError(f"no worker group consumes {', '.join(left)}: add them to a group, or a '*' group")
    return [WorkerGroup(left, group.processes, group.threads) if group.queues == (REST,) else group for group in groups]
