"""Every Redis connection Buzzer makes is built here: the one place that knows whether
Redis is reached at REDIS_URL or, with REDIS_SENTINELS set, through Redis Sentinel.

With Sentinel, a pool asks the sentinels for the current master before each new
connection (redis-py's `SentinelConnectionPool`); after a failover the connections to
the old master fail once (refused, reset, or READONLY from a demoted master, which
redis-py turns into a connection error) and the next ones go to the new master. The
URL still gives the database number, the password and the socket options; its host and
port are not used.

Settings read (at call time, never at import): REDIS_SENTINELS (a tuple of (host, port),
empty without Sentinel), REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD, REDIS_PASSWORD.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import Sentinel, SentinelConnectionPool

Address = tuple[str, int]


def parse_sentinels(value: str) -> tuple[Address, ...]:
    """`host:port,host:port,…` as (host, port) pairs; an empty value is no Sentinel.
    Anything else is refused with the reason, at start-up (config/settings.py)."""
    addresses: list[Address] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:26379
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS={value!r}: {item!r} is not host:port; write e.g. "
                "REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379."
            )
        addresses.append((host, int(port)))
    if value.strip() and not addresses:
        raise ImproperlyConfigured(f"REDIS_SENTINELS={value!r} names no sentinel: write host:port,host:port,….")
    return tuple(addresses)


def check_sentinel_settings(sentinels: tuple[Address, ...], master: str) -> None:
    """Sentinels without a master name, or a master name without sentinels, is a
    configuration that would silently not do what its author meant."""
    if sentinels and not master:
        raise ImproperlyConfigured("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master.")
    if master and not sentinels:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: list the sentinels.")


def uses_sentinel() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "REDIS_SENTINELS", ()))


def connection_pool(url: str, **options: Any) -> redis.ConnectionPool:
    """A pool of connections to the master: `ConnectionPool.from_url(url, **options)`
    without Sentinel (the URL's values win, as there), a `SentinelConnectionPool` with."""
    from django.conf import settings

    if getattr(settings, "REDIS_PASSWORD", ""):
        options.setdefault("password", settings.REDIS_PASSWORD)  # a password in the URL still wins
    if not uses_sentinel():
        return redis.ConnectionPool.from_url(url, **options)
    params = {**options, **redis.connection.parse_url(url)}
    for name in ("host", "port", "path"):  # the sentinels say where the master is
        params.pop(name, None)
    if params.pop("connection_class", None) is redis.SSLConnection:
        params["ssl"] = True  # rediss://: SentinelConnectionPool picks its TLS connection class
    manager = _sentinel(
        settings.REDIS_SENTINELS,
        settings.REDIS_SENTINEL_PASSWORD or None,
        params.get("socket_connect_timeout"),
        params.get("socket_timeout"),
    )
    return SentinelConnectionPool(settings.REDIS_SENTINEL_MASTER, manager, **params)


def client(url: str | None = None, **options: Any) -> redis.Redis:
    """A client of the master, by default with the broker's timeouts (BROKER_URL)."""
    from django.conf import settings

    return redis.Redis(connection_pool=connection_pool(url or settings.BROKER_URL, **options))


def pool_like(pool: redis.ConnectionPool, **overrides: Any) -> redis.ConnectionPool:
    """A new pool to the same server as `pool` (through the same sentinels, to the same
    master) with some connection options changed."""
    params = dict(pool.connection_kwargs)
    params.pop("connection_pool", None)  # a Sentinel pool's own proxy: the new pool makes its own
    params.update(overrides)
    if isinstance(pool, SentinelConnectionPool):
        return SentinelConnectionPool(
            pool.service_name,
            pool.sentinel_manager,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            connection_class=pool.connection_class,
            **params,
        )
    return redis.ConnectionPool(connection_class=pool.connection_class, **params)


class CachePool:
    """`OPTIONS["pool_class"]` of a Django Redis cache (config/settings.py): Django asks
    it for a pool `from_url(LOCATION, **OPTIONS)`, which this routes through
    `connection_pool`."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        return connection_pool(url, **options)


@functools.lru_cache(maxsize=8)
def _sentinel(
    sentinels: tuple[Address, ...],
    password: str | None,
    connect_timeout: float | None,
    socket_timeout: float | None,
) -> Sentinel:
    """One Sentinel manager per process and set of options: its clients of the sentinels
    are shared by every pool that asks them for the master."""
    sentinel_options: dict[str, Any] = {"socket_connect_timeout": connect_timeout, "socket_timeout": socket_timeout}
    if password:
        sentinel_options["password"] = password
    return Sentinel(list(sentinels), sentinel_kwargs=sentinel_options)
