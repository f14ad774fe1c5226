"""A Redis that fails over, on private ports: a master and one replica (both with an
append-only file, `fsync` every second) watched by three sentinels (quorum 2, a master
silent for 1 s is down). The test may SIGKILL the master, cut the replica's link, and
restart the old master, which the sentinels then turn into a replica of the new one."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, server_binary

MASTER_NAME = "buzzer"
# At 1 s, a sentinel on a busy 2-core machine took the master just promoted for down 1 s
# later (its replies came late) and failed over a second time, back to the old master:
# writes made in between were lost (the PostgreSQL fault suite, 2026-12-01).
DOWN_AFTER_MS = 3000
# Small, so that a failover whose election split (no majority) is tried again after
# twice this instead of six minutes.
FAILOVER_TIMEOUT_MS = 5000


class Sentinels:
    def __init__(
        self,
        data_dir: Path,
        count: int = 3,
        quorum: int = 2,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """`password`: the master's and replica's; `sentinel_password`: the sentinels' own."""
        self.data_dir = data_dir
        self.count = count
        self.quorum = quorum
        self.password = password
        self.sentinel_password = sentinel_password
        self.master = RedisServer(data_dir / "master", password=password)
        self.replica: RedisServer | None = None
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Sentinels:
        self.master.start()
        self.replica = RedisServer(
            self.data_dir / "replica", args=("--replicaof", "127.0.0.1", str(self.master.port)), password=self.password
        ).start()
        self._wait(lambda: self.replica_linked(self.replica), "the replica's first sync")
        for number, port in enumerate(self.ports):
            folder = self.data_dir / f"sentinel-{number}"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"  # rewritten by the sentinel as it learns
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                + (f"sentinel auth-pass {MASTER_NAME} {self.password}\n" if self.password else "")
                + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
            )
            self.procs.append(
                subprocess.Popen(
                    [server_binary(), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(lambda: self.master_port() == self.master.port, "a sentinel to answer")
        return self

    def wait_ready(self) -> None:
        """Every sentinel knows the replica and the other sentinels (learnt from their
        hellos, every 2 s): only then can a majority elect a leader and fail over.
        Clients may use the sentinels before (they answer with the master at once)."""
        self._wait(self._all_know_each_other, "the sentinels to find the replica and each other", timeout=30)

    def env(self) -> dict[str, str]:
        """What a Buzzer process needs to follow the master."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.ports),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", port) for port in self.ports)

    def sentinel(self, number: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.ports[number],
            socket_timeout=2,
            decode_responses=True,
            password=self.sentinel_password,
        )

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for number in range(self.count):
            try:
                address = self.sentinel(number).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_new_master(self, old_port: int, timeout: float = 30) -> int:
        """The new master's port once every sentinel has finished the failover: names
        another master than `old_port` and holds it up (what clients then get from them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self._settled_master_port(number) for number in range(self.count)}
            if len(ports) == 1 and None not in ports and old_port not in ports:
                return ports.pop()  # type: ignore[return-value]
            time.sleep(0.05)
        raise AssertionError(f"no failover after {timeout:.0f}s: {self.logs()}")

    def _settled_master_port(self, number: int) -> int | None:
        try:
            state = self.sentinel(number).sentinel_master(MASTER_NAME)
        except redis.RedisError:
            return None
        if not state["is_master"] or state["is_sdown"] or state["is_odown"] or "failover" in state["flags"]:
            return None
        return int(state["port"])

    def cut_replica(self) -> None:
        """The replica loses its link to the master, as a network partition would leave
        it: pointed at an address where nothing answers, it keeps what it has and
        receives nothing more; what the master takes from now on exists only there."""
        assert self.replica is not None
        self.replica.client().execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

    @staticmethod
    def role(server: RedisServer) -> dict[str, str]:
        info = server.client().info("replication")
        return {k: str(v) for k, v in info.items()}

    @staticmethod
    def replica_linked(server: RedisServer | None, master_port: int | None = None) -> bool:
        if server is None:
            return False
        try:
            info = server.client().info("replication")
        except redis.RedisError:
            return False
        return (
            info.get("role") == "slave"
            and info.get("master_link_status") == "up"
            and (master_port is None or int(info.get("master_port", 0)) == master_port)
        )

    def _all_know_each_other(self) -> bool:
        for number in range(self.count):
            try:
                state = self.sentinel(number).sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < self.count - 1:
                return False
        return True

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for number in range(self.count):
            path = self.data_dir / f"sentinel-{number}" / "sentinel.log"
            if path.exists():
                parts.append(f"sentinel {number}:\n" + path.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()
