"""Infrastructure errors: the database or Redis did not answer, or the pool had no
connection to give. They say nothing about the job, so they neither use up its retries
(`jobs.middleware.Retries`) nor answer a web request with a 500 page
(`config.middleware.UnavailableMiddleware`).

An error counts when the connection itself failed: refused, lost, timed out, "too many
clients", the server shutting down or starting up, the pool empty for too long, SQLite's
write lock held too long. A bad query (a missing column, a constraint) is the job's own
failure, even where a driver reports it with the same exception class.
"""

from __future__ import annotations

import sqlite3

import redis
from django.db import InterfaceError, OperationalError
from dramatiq.errors import BrokerConnectionError

# PostgreSQL error classes of an unreachable or overloaded server: 08 connection
# exception, 53 insufficient resources (53300 too_many_connections), 57P01-57P03
# admin/crash shutdown and cannot_connect_now (starting up or in recovery).
_PG_STATES = ("08", "53", "57P01", "57P02", "57P03")
_SQLITE_MESSAGES = ("database is locked", "database is busy", "disk i/o error", "unable to open database")


def _pool_timeout() -> type[BaseException] | None:
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # SQLite-only installs have no psycopg pool
        return None
    return PoolTimeout


def _causes(exception: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exception
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_database_unavailable(exception: BaseException) -> bool:
    """The database could not be reached or refused a connection (not a bad query)."""
    pool_timeout = _pool_timeout()
    for error in _causes(exception):
        if pool_timeout is not None and isinstance(error, pool_timeout):
            return True
        if isinstance(error, sqlite3.OperationalError):
            return any(text in str(error).lower() for text in _SQLITE_MESSAGES)
        if isinstance(error, _psycopg_error()):
            # A connection failure carries no SQLSTATE (refused, lost, closed).
            state = getattr(error, "sqlstate", None)
            if state is None:
                return isinstance(error, (_psycopg_operational(), _psycopg_interface()))
            return state.startswith(_PG_STATES)
    # Django's own: a connection that is already closed, or an error raised before the
    # driver was reached (no driver exception behind it).
    return isinstance(exception, InterfaceError) or (
        isinstance(exception, OperationalError) and exception.__cause__ is None and "closed" in str(exception)
    )


def is_broker_unavailable(exception: BaseException) -> bool:
    return any(
        isinstance(e, (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError)) for e in _causes(exception)
    )


def is_infrastructure_error(exception: BaseException) -> bool:
    return is_database_unavailable(exception) or is_broker_unavailable(exception)


def _psycopg_error() -> type[BaseException]:
    import psycopg

    return psycopg.Error


def _psycopg_operational() -> type[BaseException]:
    import psycopg

    return psycopg.OperationalError


def _psycopg_interface() -> type[BaseException]:
    import psycopg

    return psycopg.InterfaceError
