"""The Redis client factory (jobs/redis_client.py): REDIS_URL as before, or the master
the sentinels name; bad Sentinel settings stop a process at start-up with the reason."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import SentinelConnectionPool

from jobs import redis_client
from jobs.broker import BuzzerRedisBroker
from tests.support.sentinel import MASTER_NAME, Sentinels
from tests.support.workers import ROOT, worker_env

URL = "redis://:from-url@ignored.example:6380/3?socket_connect_timeout=1&socket_timeout=5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("10.0.0.1:26379", (("10.0.0.1", 26379),)),
        (" a.internal:26379 , b.internal:26380,", (("a.internal", 26379), ("b.internal", 26380))),
        ("[::1]:26379,127.0.0.1:26380", (("::1", 26379), ("127.0.0.1", 26380))),
    ],
)
def test_sentinel_addresses_are_parsed(value: str, expected: tuple) -> None:
    assert redis_client.parse_sentinels(value) == expected


@pytest.mark.parametrize(
    ("value", "culprit"),
    [
        ("sentinel.internal", "'sentinel.internal'"),
        ("10.0.0.1:26379,10.0.0.2", "'10.0.0.2'"),
        ("10.0.0.1:", "'10.0.0.1:'"),
        (":26379", "':26379'"),
        ("10.0.0.1:port", "'10.0.0.1:port'"),
        ("10.0.0.1:0", "'10.0.0.1:0'"),
        ("10.0.0.1:65536", "'10.0.0.1:65536'"),
        (" , ", "names no sentinel"),
    ],
)
def test_a_malformed_sentinel_list_is_refused_with_the_reason(value: str, culprit: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS") as refused:
        redis_client.parse_sentinels(value)
    assert culprit in str(refused.value)


def test_sentinels_and_master_name_go_together() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINEL_MASTER is not"):
        redis_client.check_sentinel_settings((("10.0.0.1", 26379),), "")
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS is not"):
        redis_client.check_sentinel_settings((), "buzzer")
    redis_client.check_sentinel_settings((), "")
    redis_client.check_sentinel_settings((("10.0.0.1", 26379),), "buzzer")


def start_up(**env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check` in a process of its own: the settings as a server loads them."""
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=worker_env(**env), capture_output=True, text=True
    )


def test_a_process_with_a_bad_sentinel_list_does_not_start() -> None:
    done = start_up(REDIS_SENTINELS="10.0.0.1:26379,10.0.0.2", REDIS_SENTINEL_MASTER="buzzer")
    assert done.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS='10.0.0.1:26379,10.0.0.2': '10.0.0.2' is not host:port" in (
        done.stderr
    )


def test_a_process_with_sentinels_but_no_master_name_does_not_start() -> None:
    done = start_up(REDIS_SENTINELS="10.0.0.1:26379")
    assert done.returncode != 0
    assert "REDIS_SENTINEL_MASTER is not" in done.stderr


def test_a_process_with_good_sentinel_settings_starts_without_reaching_them() -> None:
    done = start_up(REDIS_SENTINELS="127.0.0.1:1,127.0.0.1:2", REDIS_SENTINEL_MASTER="buzzer")
    assert done.returncode == 0, done.stderr


def test_without_sentinels_a_pool_is_the_one_from_url(settings: Any) -> None:
    settings.REDIS_SENTINELS = ()
    settings.REDIS_PASSWORD = ""
    pool = redis_client.connection_pool(URL)
    reference = redis.ConnectionPool.from_url(URL)
    assert type(pool) is redis.ConnectionPool
    assert pool.connection_class is reference.connection_class
    assert pool.connection_kwargs.keys() == reference.connection_kwargs.keys()
    for name in ("host", "port", "db", "password", "socket_connect_timeout", "socket_timeout"):
        assert pool.connection_kwargs[name] == reference.connection_kwargs[name]


@pytest.fixture
def sentinel_settings(settings: Any) -> Any:
    settings.REDIS_SENTINELS = (("127.0.0.1", 26379), ("127.0.0.1", 26380))
    settings.REDIS_SENTINEL_MASTER = "buzzer"
    settings.REDIS_SENTINEL_PASSWORD = "sentinel-secret"
    settings.REDIS_PASSWORD = ""
    return settings


def test_with_sentinels_a_pool_asks_them_for_the_master(sentinel_settings: Any) -> None:
    pool = redis_client.connection_pool(URL)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "buzzer" and pool.is_master
    kwargs = pool.connection_kwargs
    assert "host" not in kwargs and "port" not in kwargs  # the sentinels say where
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "from-url", 5.0)
    manager = pool.sentinel_manager
    addresses = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    assert sorted((a["host"], a["port"]) for a in addresses) == [("127.0.0.1", 26379), ("127.0.0.1", 26380)]
    assert manager.sentinel_kwargs["password"] == "sentinel-secret"
    assert manager.sentinel_kwargs["socket_connect_timeout"] == 1.0
    # One manager per process and set of options: pools share the sentinels' clients.
    assert redis_client.connection_pool(URL).sentinel_manager is manager


def test_redis_password_is_the_masters_when_the_url_has_none(sentinel_settings: Any) -> None:
    sentinel_settings.REDIS_PASSWORD = "master-secret"
    assert redis_client.connection_pool("redis://127.0.0.1:6379/0").connection_kwargs["password"] == "master-secret"
    assert redis_client.connection_pool(URL).connection_kwargs["password"] == "from-url"


def test_rediss_through_sentinels_uses_tls(sentinel_settings: Any) -> None:
    pool = redis_client.connection_pool("rediss://:pw@ignored:6379/0")
    assert issubclass(pool.connection_class, redis.SSLConnection)


def test_a_pool_like_another_goes_to_the_same_master_with_other_options(sentinel_settings: Any) -> None:
    pool = redis_client.connection_pool(URL)
    twin = redis_client.pool_like(pool, socket_timeout=0.25)
    assert isinstance(twin, SentinelConnectionPool) and twin is not pool
    assert (twin.service_name, twin.sentinel_manager) == (pool.service_name, pool.sentinel_manager)
    assert twin.connection_kwargs["socket_timeout"] == 0.25 and twin.connection_kwargs["db"] == 3
    assert twin.connection_kwargs["connection_pool"] is twin.proxy  # its own, not the original's

    sentinel_settings.REDIS_SENTINELS = ()
    plain = redis_client.pool_like(redis_client.connection_pool(URL), socket_timeout=0.25)
    assert (plain.connection_kwargs["host"], plain.connection_kwargs["port"]) == ("ignored.example", 6380)
    assert plain.connection_kwargs["socket_timeout"] == 0.25


@pytest.fixture
def sentinels(tmp_path: Path, settings: Any) -> Any:
    group = Sentinels(tmp_path / "redis", count=1, quorum=1).start()
    settings.REDIS_SENTINELS = group.addresses()
    settings.REDIS_SENTINEL_MASTER = MASTER_NAME
    settings.REDIS_SENTINEL_PASSWORD = ""
    settings.REDIS_PASSWORD = ""
    try:
        yield group
    finally:
        group.stop()


def test_every_kind_of_client_follows_the_master_after_a_failover(sentinels: Sentinels) -> None:
    """A real master, replica and sentinel: the broker's client, a plain client and the
    rate limits' cache all write to the master; once the master is SIGKILLed and the
    sentinel has promoted the replica, they write to the new one."""
    url = "redis://127.0.0.1:1/0?socket_connect_timeout=1&socket_timeout=5"  # host and port unused
    broker = BuzzerRedisBroker(url=url, namespace="sentinel-test")
    plain = redis_client.client(url)
    cache = RedisCache(url, {"OPTIONS": {"pool_class": "jobs.redis_client.CachePool"}})
    broker.client.set("broker", 1)
    plain.set("plain", 1)
    cache.set("cache", 1)
    old_port = sentinels.master.port
    assert sentinels.master.client().get("broker") == b"1"
    assert cache.get("cache") == 1

    sentinels.wait_ready()
    sentinels.master.kill()
    new_port = sentinels.wait_for_new_master(old_port)
    assert sentinels.replica is not None and new_port == sentinels.replica.port

    def writes_through(write: Any) -> bool:
        # A connection to the dead master fails once; the next one asks the sentinel.
        for _ in range(50):
            try:
                write()
                return True
            except redis.ConnectionError:
                time.sleep(0.1)
        return False

    assert writes_through(lambda: broker.client.set("broker", 2))
    assert writes_through(lambda: plain.set("plain", 2))
    assert writes_through(lambda: cache.set("cache", 2))
    new = sentinels.replica.client()
    assert new.get("broker") == b"2" and new.get("plain") == b"2"
    assert cache.get("cache") == 2
    broker.close()


def test_passwords_reach_the_master_and_the_sentinels(tmp_path: Path, settings: Any) -> None:
    """REDIS_PASSWORD for the master (the URL has none), REDIS_SENTINEL_PASSWORD for the
    sentinels (`requirepass` in sentinel.conf): real servers that refuse anyone else."""
    group = Sentinels(tmp_path / "redis", count=1, quorum=1, password="m-secret", sentinel_password="s-secret")
    group.start()
    try:
        settings.REDIS_SENTINELS = group.addresses()
        settings.REDIS_SENTINEL_MASTER = MASTER_NAME
        settings.REDIS_PASSWORD = "m-secret"
        settings.REDIS_SENTINEL_PASSWORD = "s-secret"
        client = redis_client.client("redis://127.0.0.1:1/0?socket_connect_timeout=1&socket_timeout=5")
        client.set("reached", 1)
        assert group.master.client().get("reached") == b"1"

        settings.REDIS_SENTINEL_PASSWORD = "wrong"
        refused = redis_client.client("redis://127.0.0.1:1/0?socket_connect_timeout=1&socket_timeout=5")
        with pytest.raises(redis.ConnectionError):  # no sentinel answers: no master to be found
            refused.get("reached")
    finally:
        group.stop()
