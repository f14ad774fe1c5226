"""Counting what a process asks of the database and of Redis, for bench/capacity.py.

`install()` (called by bench/capacity_settings.py, so in every gunicorn and worker process
the benchmark starts) wraps every database connection with an execute wrapper that counts
statements by kind and table and the rows each write touched (`cursor.rowcount`), and
counts the round trips the process makes to Redis (one per command or pipeline sent).
A thread writes the process's totals as JSON to `$BUZZER_CAPACITY_PROBE_DIR/<role>-<pid>.json`
every PROBE_DUMP_SECONDS, where the benchmark adds them up (`read_totals`). Started lazily
in each process, so that it survives the fork of a worker pool.

The pure helpers (`classify`, `Totals`, `commandstats_delta`) are what tests cover.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_DUMP_SECONDS = 0.2
WRITES = ("INSERT", "UPDATE", "DELETE")

_TABLE = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


def classify(sql: str) -> tuple[str, str]:
    """(statement kind, table written or "") of one SQL statement: kind is its first word
    upper-cased (SELECT, INSERT, UPDATE, DELETE, SAVEPOINT, RELEASE, WITH…)."""
    words = sql.lstrip().split(None, 1)
    kind = words[0].upper() if words else ""
    match = _TABLE.match(sql) if kind in WRITES else None
    return kind, match.group(1) if match else ""


@dataclass
class Totals:
    """One process's (or several processes' added) counts."""

    statements: Counter[str] = field(default_factory=Counter)  # by kind
    writes: Counter[str] = field(default_factory=Counter)  # write statements by "KIND table"
    rows: Counter[str] = field(default_factory=Counter)  # rows written by "KIND table"
    redis_round_trips: int = 0
    redis_bytes_sent: int = 0
    commits: int = 0  # explicit COMMITs (the end of an atomic block)
    autocommitted: int = 0  # statements run outside a transaction: each is one

    def record(self, sql: str, rowcount: int, autocommit: bool = False) -> None:
        kind, table = classify(sql)
        self.statements[kind] += 1
        self.autocommitted += autocommit
        if kind in WRITES:
            self.writes[f"{kind} {table}"] += 1
            self.rows[f"{kind} {table}"] += max(rowcount, 0)

    def add(self, other: Totals) -> None:
        self.statements.update(other.statements)
        self.writes.update(other.writes)
        self.rows.update(other.rows)
        self.redis_round_trips += other.redis_round_trips
        self.redis_bytes_sent += other.redis_bytes_sent
        self.commits += other.commits
        self.autocommitted += other.autocommitted

    def minus(self, other: Totals) -> Totals:
        result = Totals(
            Counter(self.statements),
            Counter(self.writes),
            Counter(self.rows),
            self.redis_round_trips - other.redis_round_trips,
            self.redis_bytes_sent - other.redis_bytes_sent,
            self.commits - other.commits,
            self.autocommitted - other.autocommitted,
        )
        result.statements.subtract(other.statements)
        result.writes.subtract(other.writes)
        result.rows.subtract(other.rows)
        return result

    @property
    def statement_count(self) -> int:
        return sum(self.statements.values())

    @property
    def transactions(self) -> int:
        return self.commits + self.autocommitted

    @property
    def rows_written(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "statements": dict(self.statements),
            "writes": dict(self.writes),
            "rows": dict(self.rows),
            "redis_round_trips": self.redis_round_trips,
            "redis_bytes_sent": self.redis_bytes_sent,
            "commits": self.commits,
            "autocommitted": self.autocommitted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        return cls(
            Counter(data.get("statements", {})),
            Counter(data.get("writes", {})),
            Counter(data.get("rows", {})),
            int(data.get("redis_round_trips", 0)),
            int(data.get("redis_bytes_sent", 0)),
            int(data.get("commits", 0)),
            int(data.get("autocommitted", 0)),
        )


def read_totals(directory: Path, role: str) -> Totals:
    """The sum of every `role` process's last dump in `directory`."""
    total = Totals()
    for path in sorted(directory.glob(f"{role}-*.json")):
        try:
            total.add(Totals.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # being replaced this instant: os.replace makes that rare; the next read has it
    return total


def commandstats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Calls per command between two `INFO commandstats` readings (redis-py's parsed form,
    keys `cmdstat_<name>`), zero deltas left out. Redis counts the commands a Lua script
    runs as well as the script call itself."""
    calls: dict[str, int] = {}
    for key, stats in after.items():
        name = key.removeprefix("cmdstat_")
        delta = int(stats["calls"]) - int(before.get(key, {}).get("calls", 0))
        if delta:
            calls[name] = delta
    return calls


# --- the in-process part -------------------------------------------------------------

_totals = Totals()
_lock = threading.Lock()
_started_in: int | None = None


def _ensure_dumper() -> None:
    global _started_in
    if _started_in == os.getpid():
        return
    with _lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        _totals.__init__()  # a forked child starts from zero: its parent's counts are the parent's
    threading.Thread(target=_dump_forever, name="capacity-probe", daemon=True).start()


def _dump_forever() -> None:
    directory = Path(os.environ["BUZZER_CAPACITY_PROBE_DIR"])
    role = os.environ.get("BUZZER_CAPACITY_ROLE", "process")
    path = directory / f"{role}-{os.getpid()}.json"
    temporary = directory / f".{role}-{os.getpid()}.tmp"
    while True:
        with _lock:
            data = json.dumps(_totals.as_dict())
        temporary.write_text(data)
        os.replace(temporary, path)
        time.sleep(PROBE_DUMP_SECONDS)


def _count_statement(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    result = execute(sql, params, many, context)
    _ensure_dumper()
    rowcount = getattr(context.get("cursor"), "rowcount", -1)
    connection = context.get("connection")
    autocommit = bool(connection is not None and connection.autocommit and not connection.in_atomic_block)
    with _lock:
        _totals.record(sql, rowcount if isinstance(rowcount, int) else -1, autocommit)
    return result


def _on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count_statement in connection.execute_wrappers:
        return
    connection.execute_wrappers.append(_count_statement)
    commit = connection.commit

    def counted_commit() -> None:
        commit()
        _ensure_dumper()
        with _lock:
            _totals.commits += 1

    connection.commit = counted_commit


def install() -> None:
    """Count in this process (a no-op without BUZZER_CAPACITY_PROBE_DIR)."""
    if not os.environ.get("BUZZER_CAPACITY_PROBE_DIR"):
        return
    import redis.connection
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection, dispatch_uid="bench.capacity_probe")
    original = redis.connection.AbstractConnection.send_packed_command
    if getattr(original, "_capacity_probe", False):
        return

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        _ensure_dumper()
        size = len(command) if isinstance(command, (bytes, str)) else sum(len(part) for part in command)
        with _lock:
            _totals.redis_round_trips += 1
            _totals.redis_bytes_sent += size
        original(self, command, check_health)

    send_packed_command._capacity_probe = True  # type: ignore[attr-defined]
    redis.connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
