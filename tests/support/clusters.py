"""Real Redis and RabbitMQ clusters on this one machine, for failover tests and benchmarks.

* :class:`RedisCluster` — six ``redis-server`` processes (three masters, three replicas) with AOF, forming
  one Redis Cluster whose failover takes a few seconds (``cluster-node-timeout`` 1 s);
* :class:`RabbitCluster` — three RabbitMQ nodes clustered together, apart from the machine's own broker
  (own node names, ports, data folders and Erlang cookie; they only register with the shared epmd).

Both bind 127.0.0.1 only. The methods are synchronous (subprocesses and short polls); from an async test
call the slow ones through ``await asyncio.to_thread(cluster.wait_failover, port)``. In a fixture::

    @pytest.fixture(scope="session")
    def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
        with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:  # start() ... stop()
            yield cluster

Without ``first_port`` a cluster takes the first free block of ports from the default on (17000.. for
Redis, 17200.. for RabbitMQ), so two test sessions on one machine do not collide. Which run owns a block
is recorded under ``/tmp/gwtest-clusters``: an ``flock`` its owner holds while it lives, and a JSON record.
A block whose owner died (a crashed or killed run) is cleaned at the next start: its processes, found by a
marker in their command line, are killed and its folder removed. A block left up on purpose by
``bin/clusters up`` is never taken over; ``bin/clusters down`` stops it.

Operators: ``python -m tests.support.clusters up|down|status`` (``bin/clusters``) starts both clusters,
prints their ``GATEWAY_*`` settings as env lines and leaves them running until ``down``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

import redis

HOST = "127.0.0.1"
REGISTRY = Path(tempfile.gettempdir()) / "gwtest-clusters"
OWNED_MARK = ".gwtest-cluster"  # a folder holding this file was made by this module and may be wiped
REDIS_FIRST_PORT = 17000
RABBIT_FIRST_PORT = 17200
SLOTS = 16384

T = TypeVar("T")


class ClusterError(RuntimeError):
    """A cluster did not start, or did not reach the state asked for before its deadline."""


class PortsBusy(ClusterError):
    """The ports asked for are in use by something this module must not kill."""


def wait_until(what: str, condition: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` and the last error.

    Exceptions raised by ``condition`` count as "not yet" (a node that is still starting refuses
    connections), so the last one is reported when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except (OSError, redis.RedisError, ClusterError, subprocess.SubprocessError, ValueError) as exc:
            last_error, result = exc, None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f": last error {last_error!r}" if last_error is not None else ""
            raise ClusterError(f"{what}: not reached within {timeout:.0f} s{detail}")
        time.sleep(interval)


# -- processes -----------------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    """The words of a process's command line (empty when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.replace(b"\0", b" ").decode(errors="replace").split()


def _marked_pids(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` as one word: a cluster's processes, from any run."""
    own = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != own and marker in _cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies, which hold no ports, count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _kill(pids: Sequence[int], timeout: float = 10.0) -> None:
    """SIGKILL ``pids`` and wait until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(f"processes {list(pids)} gone", lambda: not any(_running(pid) for pid in pids), timeout)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in its own session, with everything it started, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own (it outlives ``bin/clusters up``), output into ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


# -- ownership of a block of ports ---------------------------------------------------------------------


class _Claim:
    """Which run owns a block of ports: an ``flock`` held while its owner lives, and a JSON record.

    The lock dies with its owner, so a record whose lock can be taken belongs to a dead run, unless the
    record says ``detached`` (left up on purpose by ``bin/clusters up``).
    """

    def __init__(self, kind: str, first_port: int) -> None:
        self.kind = kind
        self.first_port = first_port
        self.lock_path = REGISTRY / f"{kind}-{first_port}.lock"
        self.record_path = REGISTRY / f"{kind}-{first_port}.json"
        self._lock: int | None = None

    def acquire(self) -> bool:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    @property
    def held(self) -> bool:
        return self._lock is not None

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def read(self) -> dict[str, Any]:
        try:
            record: dict[str, Any] = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return record

    def write(self, record: dict[str, Any]) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self.record_path)

    def forget(self) -> None:
        self.record_path.unlink(missing_ok=True)


def _prepare_dir(base_dir: Path) -> None:
    """Make ``base_dir`` an empty folder of ours; refuse to wipe a folder this module did not make."""
    if base_dir.exists() and any(base_dir.iterdir()):
        if not (base_dir / OWNED_MARK).exists():
            raise ClusterError(f"{base_dir} is not empty and was not made by {__name__}; pick another --dir")
        shutil.rmtree(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / OWNED_MARK).write_text(f"made by {__name__}\n")


def _remove_dir(base_dir: Path) -> None:
    if (base_dir / OWNED_MARK).exists():
        shutil.rmtree(base_dir, ignore_errors=True)


class _PortBlock:
    """What both clusters share: the claim on their ports, leftovers' clean-up, start and stop."""

    kind: ClassVar[str]
    default_first_port: ClassVar[int]
    block_span: ClassVar[int]  # ports a block takes from first_port on; also the step to the next block

    def __init__(self, base_dir: Path, first_port: int | None) -> None:
        self.base_dir = Path(base_dir).resolve()
        self._explicit_port = first_port is not None
        self.first_port = first_port if first_port is not None else self.default_first_port
        self._claim = _Claim(self.kind, self.first_port)
        self.startup_seconds: float | None = None

    @property
    def marker(self) -> str:
        """One word in the command line of each of this block's server processes, whichever run made it."""
        return f"gwtest-{self.kind}-{self.first_port}"

    def ports_needed(self) -> list[int]:
        raise NotImplementedError

    def _set_first_port(self, first_port: int) -> None:
        self.first_port = first_port
        self._claim = _Claim(self.kind, first_port)

    def _take_ports(self) -> None:
        """Claim the block (the next free one when no port was asked for), killing a dead run's leftovers."""
        tries = 1 if self._explicit_port else 20
        problems = []
        for attempt in range(tries):
            if attempt:
                self._set_first_port(self.first_port + self.block_span)
            try:
                self._take_block()
                return
            except PortsBusy as exc:
                problems.append(str(exc))
        raise PortsBusy("; ".join(problems))

    def _take_block(self) -> None:
        if not self._claim.acquire():
            owner = self._claim.read().get("owner_pid", "?")
            raise PortsBusy(f"{self.kind} ports from {self.first_port} belong to a live run (pid {owner})")
        try:
            record = self._claim.read()
            leftovers = _marked_pids(self.marker)
            if record.get("detached") and leftovers:
                raise PortsBusy(
                    f"{self.kind} ports from {self.first_port} hold a cluster started by `bin/clusters up` "
                    f"(in {record.get('base_dir')}); stop it with `bin/clusters down` first"
                )
            if leftovers:
                _kill(leftovers)
            if record.get("base_dir") and Path(record["base_dir"]) != self.base_dir:
                _remove_dir(Path(record["base_dir"]))

            def busy() -> list[int]:
                return [port for port in self.ports_needed() if not _port_free(port)]

            if busy():
                with contextlib.suppress(ClusterError):  # killed leftovers' sockets can linger a moment
                    wait_until(f"{self.kind} ports free", lambda: not busy(), 5.0 if leftovers else 0.0)
            if busy():
                raise PortsBusy(f"{self.kind} ports {busy()} are in use by another program")
        except BaseException:
            self._claim.release()
            raise

    def _write_record(self, *, detached: bool, **extra: Any) -> None:
        self._claim.write(
            {
                "kind": self.kind,
                "first_port": self.first_port,
                "base_dir": str(self.base_dir),
                "owner_pid": os.getpid(),
                "detached": detached,
                **extra,
            }
        )

    def start(self, *, detach: bool = False) -> Self:
        """Start the cluster and wait until it serves; ``detach``: leave it up after this process ends.

        Ports (and so URLs and node names) are final once this returns.
        """
        began = time.monotonic()
        self._take_ports()
        try:
            _prepare_dir(self.base_dir)
            self._write_record(detached=False)  # until it is up, a dead owner's half-start is a leftover
            self._start()
            self._write_record(detached=detach, ready=True, **self.describe())
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def adopt(self) -> bool:
        """Take over a block another run left (for ``down``): False while a live run owns it."""
        if not self._claim.acquire():
            return False
        base_dir = self._claim.read().get("base_dir")
        if base_dir:
            self.base_dir = Path(base_dir)
        return True

    def left_up(self) -> bool:
        """Whether ``bin/clusters up`` left this block's cluster running."""
        record = self._claim.read()
        return bool(record.get("detached") and record.get("ready") and _marked_pids(self.marker))

    def _start(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What ``status`` shows and the record keeps: URLs and the like."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The gateway's settings for this cluster."""
        raise NotImplementedError

    def _kill_all(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Kill every process of the cluster and remove its folder.

        Holding the block's claim, that includes processes a dead run left on these ports; without it
        (``start`` failed to claim them), only the processes this object started.
        """
        owner = self._claim.held
        try:
            self._kill_all()
            leftovers = _marked_pids(self.marker) if owner else []
            if leftovers:
                _kill(leftovers)
        finally:
            if owner:
                _remove_dir(self.base_dir)
                self._claim.forget()
                self._claim.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- Redis ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisNode:
    """One line of ``CLUSTER NODES``: a node as some node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr"})

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)

    @classmethod
    def parse(cls, line: str) -> RedisNode:
        fields = line.split()
        address = fields[1].split("@")[0]
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being migrated
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        return cls(
            node_id=fields[0],
            port=int(address.rpartition(":")[2]),
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            connected=fields[7] == "connected",
            slots=tuple(slots),
        )


class RedisCluster(_PortBlock):
    """Six ``redis-server`` processes (3 masters + 3 replicas, AOF on) forming one Redis Cluster."""

    kind = "redis"
    default_first_port = REDIS_FIRST_PORT
    block_span = 10  # 6 client ports; the cluster bus takes port + 10000
    size = 6

    def __init__(
        self,
        base_dir: Path,
        first_port: int | None = None,
        *,
        node_timeout_ms: int = 1000,
        appendfsync: str = "everysec",
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(base_dir, first_port)
        self.node_timeout_ms = node_timeout_ms
        self.appendfsync = appendfsync
        self.start_timeout = start_timeout
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._slots_of_killed: dict[int, tuple[tuple[int, int], ...]] = {}

    # addresses

    @property
    def ports(self) -> list[int]:
        return [self.first_port + index for index in range(self.size)]

    def ports_needed(self) -> list[int]:
        return [*self.ports, *(port + 10000 for port in self.ports)]

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{port}/0" for port in self.ports]

    @property
    def url(self) -> str:
        """One node's URL; a cluster client discovers the others from it."""
        return self.urls[0]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, e.g. for ``[ClusterNode(h, p) for h, p in startup_nodes]``."""
        return [(HOST, port) for port in self.ports]

    def env(self) -> dict[str, str]:
        return {"GATEWAY_REDIS_URL": self.url, "GATEWAY_REDIS_CLUSTER": "true"}

    def describe(self) -> dict[str, Any]:
        return {"urls": self.urls, "env": self.env()}

    def node_dir(self, port: int) -> Path:
        return self.base_dir / f"node-{port}"

    def client(self, port: int) -> redis.Redis:
        """A plain (not cluster) client of one node, with short timeouts for polling."""
        return redis.Redis(
            host=HOST, port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1
        )

    def _command(self, port: int, *args: str) -> str:
        with self.client(port) as client:
            return str(client.execute_command(*args))

    def cluster_info(self, port: int) -> dict[str, str]:
        lines = self._command(port, "CLUSTER", "INFO").splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def replication_info(self, port: int) -> dict[str, Any]:
        with self.client(port) as client:
            info: dict[str, Any] = client.info("replication")
            return info

    def cluster_nodes(self, port: int | None = None) -> list[RedisNode]:
        """``CLUSTER NODES`` as seen by ``port`` (default: the first live node)."""
        seen_from = port if port is not None else self.alive()[0]
        return [RedisNode.parse(line) for line in self._command(seen_from, "CLUSTER", "NODES").splitlines()]

    # state

    def alive(self) -> list[int]:
        """Ports whose server process is running."""
        return [port for port, process in self._processes.items() if process.poll() is None]

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots now, in slot order."""
        nodes = [node for node in self.cluster_nodes() if node.is_master and node.slots and not node.failed]
        return [node.port for node in sorted(nodes, key=lambda node: node.slots[0])]

    def replicas(self) -> list[int]:
        """Ports of the live replicas."""
        return sorted(node.port for node in self.cluster_nodes() if "slave" in node.flags and not node.failed)

    # life cycle

    def _start_node(self, port: int) -> None:
        folder = self.node_dir(port)
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(folder),
            "--daemonize", "no",
            "--pidfile", str(folder / "redis.pid"),
            "--logfile", str(folder / "redis.log"),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica fails over however long it was cut off: tests kill and restart nodes at will.
            "--cluster-replica-validity-factor", "0",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--repl-diskless-sync-delay", "0",  # a replica (re)joining syncs at once, not after 5 s
            "--proc-title-template", f"{{title}} {{listen-addr}} {{server-mode}} {self.marker}",
        ]  # fmt: skip
        self._processes[port] = _spawn(args, folder / "stdout.log")

    def _start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            self._wait_answers(port, self.start_timeout)
        create = subprocess.run(
            [
                shutil.which("redis-cli") or "/usr/bin/redis-cli",
                "--cluster", "create", *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas", "1",
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
        )  # fmt: skip
        if create.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        self.wait_healthy(self.start_timeout, replicas_in_sync=True)

    def _wait_answers(self, port: int, timeout: float) -> None:
        def answers() -> bool:
            process = self._processes[port]
            if process.poll() is not None:
                log = _tail(self.node_dir(port) / "redis.log")
                raise ClusterError(f"redis-server on {port} exited with {process.returncode}:\n{log}")
            with self.client(port) as client:
                return bool(client.ping())

        wait_until(f"redis-server on {port} answers", answers, timeout)

    def _healthy(self, replicas_in_sync: bool) -> bool:
        """Every live node says ok and sees all slots served by live masters (and replicas linked)."""
        alive = self.alive()
        for port in alive:
            info = self.cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            served = sum(
                node.slot_count
                for node in self.cluster_nodes(port)
                if node.is_master and not node.failed and node.port in alive
            )
            if served != SLOTS:
                return False
        if replicas_in_sync:
            for port in alive:
                role = self.replication_info(port)
                if role.get("role") == "slave" and role.get("master_link_status") != "up":
                    return False
        return True

    def wait_healthy(self, timeout: float = 30.0, *, replicas_in_sync: bool = False) -> None:
        """Wait until every live node reports ``cluster_state:ok`` with all slots on live masters."""
        try:
            wait_until("Redis cluster healthy", lambda: self._healthy(replicas_in_sync), timeout)
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n{self._diagnostics()}") from None

    def _diagnostics(self) -> str:
        try:
            return "CLUSTER NODES:\n" + self._command(self.alive()[0], "CLUSTER", "NODES")
        except (IndexError, OSError, redis.RedisError) as exc:
            return f"(no CLUSTER NODES: {exc!r})"

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every live replica has applied all its master has written, before killing a master.

        Replication is asynchronous, so a write acknowledged just before its master dies can be lost on
        failover; tests that want it to survive wait for this first (or use ``WAIT``).
        """

        def in_sync() -> bool:
            for port in self.alive():
                info = self.replication_info(port)
                if info.get("role") != "master":
                    continue
                offset = info.get("master_repl_offset")
                links = [value for key, value in info.items() if key.startswith("slave")]
                if any(not isinstance(link, dict) or link.get("offset") != offset for link in links):
                    return False
            return True

        wait_until("Redis replicas in sync", in_sync, timeout)

    def kill_node(self, port: int) -> None:
        """SIGKILL one node (master or replica); it can come back with :meth:`restart_node`."""
        process = self._processes.get(port)
        if process is None or process.poll() is not None:
            raise ClusterError(f"no running Redis node on {port}")
        _kill_group(process)

    def master_of_slot(self, slot: int) -> int:
        """The port of the live master serving ``slot`` now."""
        for node in self.cluster_nodes():
            if node.is_master and not node.failed and any(a <= slot <= b for a, b in node.slots):
                return node.port
        raise ClusterError(f"no live master serves slot {slot}")

    def kill_master(self, index_or_port: int) -> int:
        """SIGKILL a master, given as its index in :meth:`masters` or its port; returns its port."""
        nodes = {node.port: node for node in self.cluster_nodes()}
        masters = self.masters()
        port = masters[index_or_port] if index_or_port < len(masters) else index_or_port
        if port not in masters:
            raise ClusterError(f"{port} is not a serving master (masters: {masters})")
        self._slots_of_killed[port] = nodes[port].slots
        self.kill_node(port)
        return port

    def wait_failover(self, dead_port: int, timeout: float = 30.0) -> int:
        """Wait until a replica serves the dead master's slots and the cluster is ok; returns its port."""
        slots = self._slots_of_killed.get(dead_port)
        if slots is None:  # killed some other way: its slots are still its own in the others' view
            slots = next(node.slots for node in self.cluster_nodes() if node.port == dead_port)
        first_slot = slots[0][0]

        def promoted() -> int | None:
            alive = self.alive()
            owners = set()
            for port in alive:
                for node in self.cluster_nodes(port):
                    if (
                        node.is_master
                        and not node.failed
                        and any(a <= first_slot <= b for a, b in node.slots)
                    ):
                        owners.add(node.port)
            if len(owners) != 1 or dead_port in owners or not owners <= set(alive):
                return None
            return owners.pop() if self._healthy(replicas_in_sync=False) else None

        try:
            return wait_until(f"failover of Redis master {dead_port}", promoted, timeout)
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n{self._diagnostics()}") from None

    def restart_node(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again on its own folder (AOF, nodes.conf); wait until it has rejoined.

        A master that was failed over comes back as a replica of its successor; "rejoined" means the
        cluster is ok in its own view, it is a replica with its link to its master up (or a master with
        slots, when it came back before a failover), and no live node flags it as failed any more.
        """
        if port in self.alive():
            raise ClusterError(f"Redis node {port} is running")
        self._start_node(port)
        self._wait_answers(port, timeout)

        def rejoined() -> bool:
            if self.cluster_info(port).get("cluster_state") != "ok":
                return False
            role = self.replication_info(port)
            if role.get("role") == "master":  # a master is back only with slots, not the stale view of one
                myself = next(node for node in self.cluster_nodes(port) if "myself" in node.flags)
                if not myself.slots:
                    return False
            elif role.get("master_link_status") != "up":
                return False
            return all(  # and the others have cleared its FAIL flag
                not node.failed
                for peer in self.alive()
                for node in self.cluster_nodes(peer)
                if node.port == port
            )

        wait_until(f"Redis node {port} rejoined", rejoined, timeout)
        self._slots_of_killed.pop(port, None)

    def _kill_all(self) -> None:
        for process in self._processes.values():
            _kill_group(process)
        self._processes.clear()


# -- RabbitMQ ------------------------------------------------------------------------------------------


class RabbitCluster(_PortBlock):
    """Three RabbitMQ nodes clustered together, with their own node names, ports, folders and cookie.

    Per node ``i`` (0, 1, 2): AMQP on ``first_port + i``, Erlang distribution on ``first_port + 10 + i``;
    ``rabbitmqctl`` calls use ``first_port + 20 ..  + 39`` for their own distribution, away from the
    machine broker's 25672 and 35672-35682. No plugins are enabled (no management listener).
    """

    kind = "rabbit"
    default_first_port = RABBIT_FIRST_PORT
    block_span = 50
    size = 3
    letters = "abc"

    def __init__(
        self,
        base_dir: Path,
        first_port: int | None = None,
        *,
        erl_args: str = "",
        start_timeout: float = 120.0,
        cookie: str | None = None,
    ) -> None:
        super().__init__(base_dir, first_port)
        self.erl_args = erl_args
        self.start_timeout = start_timeout
        self.cookie = cookie or f"GWTESTCOOKIE{os.urandom(12).hex().upper()}"
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._os_pids: dict[int, int] = {}
        self.timings: dict[str, float] = {}  # seconds each start-up phase took, for reports

    # addresses

    @property
    def ports(self) -> list[int]:
        return [self.first_port + index for index in range(self.size)]

    @property
    def dist_ports(self) -> list[int]:
        return [self.first_port + 10 + index for index in range(self.size)]

    def ports_needed(self) -> list[int]:
        return [*self.ports, *self.dist_ports]

    @property
    def node_names(self) -> list[str]:
        return [f"gwtest{self.first_port}{letter}@localhost" for letter in self.letters[: self.size]]

    @property
    def urls(self) -> list[str]:
        return [f"amqp://guest:guest@{HOST}:{port}/" for port in self.ports]

    @property
    def amqp_url(self) -> str:
        """All three nodes, comma-separated, as ``GATEWAY_AMQP_URL`` takes them."""
        return ",".join(self.urls)

    def env(self) -> dict[str, str]:
        return {"GATEWAY_AMQP_URL": self.amqp_url, "GATEWAY_QUEUE_TYPE": "quorum"}

    def describe(self) -> dict[str, Any]:
        return {"urls": self.urls, "nodes": self.node_names, "cookie": self.cookie, "env": self.env()}

    @property
    def home(self) -> Path:
        """HOME of the nodes and of rabbitmqctl: holds the private ``.erlang.cookie``."""
        return self.base_dir / "home"

    def node_dir(self, index: int) -> Path:
        return self.base_dir / f"node-{self.letters[index]}"

    def log_file(self, index: int) -> Path:
        return self.node_dir(index) / "log" / f"{self.node_names[index]}.log"

    # environment

    def _base_env(self) -> dict[str, str]:
        """The caller's environment without RabbitMQ or Erlang settings, plus this cluster's own files."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_")) and key not in ("ERLANG_COOKIE",)
        }
        env.update(
            HOME=str(self.home),
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            RABBITMQ_CTL_DIST_PORT_MIN=str(self.first_port + 20),
            RABBITMQ_CTL_DIST_PORT_MAX=str(self.first_port + 39),
            RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _node_env(self, index: int) -> dict[str, str]:
        folder = self.node_dir(index)
        return {
            **self._base_env(),
            "RABBITMQ_NODENAME": self.node_names[index],
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.ports[index]),
            "RABBITMQ_DIST_PORT": str(self.dist_ports[index]),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "beam.pid"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(folder / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-kernel inet_dist_use_interface {{127,0,0,1}} {self.erl_args} -gwtest_cluster {self.marker}"
            ),
        }

    def _write_files(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.base_dir / "rabbitmq-env.conf").write_text(
            "# empty: keeps /etc/rabbitmq/rabbitmq-env.conf out\n"
        )
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        for index in range(self.size):
            folder = self.node_dir(index)
            (folder / "log").mkdir(parents=True, exist_ok=True)
            (folder / "conf.d").mkdir(exist_ok=True)
            config = (
                f"listeners.tcp.default = {HOST}:{self.ports[index]}\n"
                "loopback_users.guest = true\n"
                "log.console = false\n"
                "log.file.level = info\n"
            )
            if index > 0:
                # Joins node a while booting (a has no peers of its own, so it always forms the cluster):
                # saves the stop_app / join_cluster / start_app round of CLI calls (seconds each).
                config += (
                    "cluster_formation.peer_discovery_backend = classic_config\n"
                    f"cluster_formation.classic_config.nodes.1 = {self.node_names[0]}\n"
                    f"cluster_formation.classic_config.nodes.2 = {self.node_names[index]}\n"
                    "cluster_formation.discovery_retry_limit = 240\n"
                    "cluster_formation.discovery_retry_interval = 500\n"
                )
            (folder / "rabbitmq.conf").write_text(config)

    # rabbitmqctl

    def ctl(self, index: int, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <node i> ARGS`` with this cluster's cookie; its output, or ClusterError."""
        command = [
            shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl",
            "-q",
            "-n", self.node_names[index],
            "--erlang-cookie", self.cookie,
            *args,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                env=self._base_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"rabbitmqctl {' '.join(args)} on {self.node_names[index]} timed out") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl {' '.join(args)} on {self.node_names[index]} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def running_nodes(self, via: int) -> list[str]:
        """The cluster's running nodes as node ``via`` sees them."""
        status = json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def wait_running(self, count: int, via: int | None = None, timeout: float = 60.0) -> None:
        """Wait until node ``via`` (default: the first live one) sees ``count`` running nodes."""
        seen_from = via if via is not None else self.alive()[0]
        wait_until(
            f"{count} RabbitMQ nodes running as {self.node_names[seen_from]} sees it",
            lambda: len(self.running_nodes(seen_from)) == count,
            timeout,
            interval=0.5,
        )

    def quorum_queue(self, name: str, via: int | None = None, vhost: str = "/") -> dict[str, Any]:
        """A quorum queue's ``leader``, ``members`` and ``online`` node names, as node ``via`` sees them."""
        seen_from = via if via is not None else self.alive()[0]
        listing = self.ctl(
            seen_from,
            "list_queues",
            "-p",
            vhost,
            "name",
            "leader",
            "members",
            "online",
            "--formatter",
            "json",
        )
        for queue in json.loads(listing):
            if queue["name"] == name:
                return dict(queue)
        raise ClusterError(f"no queue {name!r} in vhost {vhost!r}")

    def node_index(self, node_name: str) -> int:
        return self.node_names.index(node_name)

    # state

    def alive(self) -> list[int]:
        """Indexes of the nodes whose Erlang VM is running."""
        return [index for index, pid in self._os_pids.items() if _running(pid)]

    def os_pid(self, index: int) -> int:
        """The OS pid of node ``index``'s ``beam.smp``."""
        return self._os_pids[index]

    # life cycle

    def _start_node(self, index: int) -> None:
        folder = self.node_dir(index)
        (folder / "beam.pid").unlink(missing_ok=True)
        self._processes[index] = _spawn(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"], folder / "startup.log", env=self._node_env(index)
        )

    def _wait_node_up(self, index: int, timeout: float) -> None:
        """Wait until node ``index`` accepts AMQP connections; remember its ``beam.smp`` pid."""
        folder = self.node_dir(index)

        def listening() -> bool:
            process = self._processes[index]
            if process.poll() is not None:
                raise ClusterError(
                    f"RabbitMQ node {self.node_names[index]} exited with {process.returncode}:\n"
                    f"{_tail(folder / 'startup.log')}\n{_tail(self.log_file(index))}"
                )
            with socket.create_connection((HOST, self.ports[index]), timeout=1):
                return True

        wait_until(f"RabbitMQ node {self.node_names[index]} listening", listening, timeout)
        pid = int((folder / "beam.pid").read_text().strip())
        if self.marker not in _cmdline(pid):
            raise ClusterError(
                f"pid {pid} in {folder / 'beam.pid'} is not {self.node_names[index]}'s beam.smp"
            )
        self._os_pids[index] = pid

    def _start(self) -> None:
        began = time.monotonic()
        self._write_files()
        for index in range(self.size):  # in parallel: each takes seconds of mostly single-core work
            self._start_node(index)
        for index in range(self.size):
            self._wait_node_up(index, self.start_timeout)
        self.timings["boot"] = time.monotonic() - began
        joined = time.monotonic()
        clustered = self.running_nodes(0)
        for index in range(1, self.size):  # a node that booted standalone after all joins the CLI way
            if self.node_names[index] not in clustered:
                self.ctl(index, "stop_app")
                self.ctl(index, "join_cluster", self.node_names[0])
                self.ctl(index, "start_app")
        if len(clustered) < self.size:
            self.wait_running(self.size, via=0, timeout=self.start_timeout)
        self.timings["join"] = time.monotonic() - joined

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``'s ``beam.smp`` (a crash: no goodbye to its peers or clients)."""
        if index not in self.alive():
            raise ClusterError(f"RabbitMQ node {self.node_names[index]} is not running")
        _kill([self._os_pids[index]])
        process = self._processes.get(index)
        if process is not None:
            _kill_group(process)  # the wrapper script and Erlang's helper processes

    def restart_node(self, index: int, timeout: float | None = None) -> None:
        """Start a killed node again on its own folder; wait until it listens and a peer sees it running."""
        if index in self.alive():
            raise ClusterError(f"RabbitMQ node {self.node_names[index]} is running")
        deadline = timeout if timeout is not None else self.start_timeout
        self._start_node(index)
        self._wait_node_up(index, deadline)
        peer = next((other for other in self.alive() if other != index), index)
        self.wait_running(len(self.alive()), via=peer, timeout=deadline)

    def _kill_all(self) -> None:
        pids = [pid for pid in self._os_pids.values() if _running(pid)]
        if pids:
            _kill(pids)
        for process in self._processes.values():
            _kill_group(process)
        self._processes.clear()
        self._os_pids.clear()


# -- command line --------------------------------------------------------------------------------------


def _clusters(args: argparse.Namespace) -> tuple[RedisCluster, RabbitCluster]:
    base = Path(args.dir).resolve()
    return RedisCluster(base / "redis", args.redis_port), RabbitCluster(base / "rabbit", args.rabbit_port)


def _up(args: argparse.Namespace) -> int:
    clusters = _clusters(args)
    starting = []
    for cluster in clusters:
        if cluster.left_up():
            print(f"{cluster.kind}: already up (ports from {cluster.first_port})", file=sys.stderr)
        else:
            starting.append(cluster)
    started = False
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # Redis is up while RabbitMQ still boots
            futures = {pool.submit(cluster.start, detach=True): cluster for cluster in starting}
            failures = 0
            for future, cluster in futures.items():
                try:
                    future.result()
                except ClusterError as exc:
                    print(f"{cluster.kind}: {exc}", file=sys.stderr)
                    failures += 1
                else:
                    print(f"{cluster.kind}: up in {cluster.startup_seconds:.1f} s", file=sys.stderr)
        started = failures == 0
    finally:
        if not started:  # all or nothing: an operator retries `up` on a clean slate
            for cluster in starting:
                cluster.stop()
    if not started:
        return 1
    for cluster in clusters:
        record = cluster._claim.read()
        for key, value in record.get("env", {}).items():
            print(f"{key}={value}")
    return 0


def _down(args: argparse.Namespace) -> int:
    status = 0
    for cluster in _clusters(args):
        if not cluster.adopt():
            owner = cluster._claim.read().get("owner_pid", "?")
            print(
                f"{cluster.kind}: ports from {cluster.first_port} belong to live pid {owner}", file=sys.stderr
            )
            status = 1
            continue
        cluster.stop()
        print(f"{cluster.kind}: down (ports from {cluster.first_port})", file=sys.stderr)
    with contextlib.suppress(OSError):  # only when empty: it may hold the other cluster, or other files
        Path(args.dir).rmdir()
    return status


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or HOST, parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _status(args: argparse.Namespace) -> int:
    """Env lines of the clusters that are up, with a comment per node saying whether it answers."""
    status = 0
    for cluster in _clusters(args):
        record = cluster._claim.read()
        pids = _marked_pids(cluster.marker)
        if not record.get("ready") or not pids:
            print(f"# {cluster.kind}: not running (ports from {cluster.first_port})")
            status = 1
            continue
        answering = [url for url in record["urls"] if _answers(url)]
        print(
            f"# {cluster.kind}: {len(answering)}/{len(record['urls'])} nodes answer, in {record['base_dir']}"
        )
        for url in record["urls"]:
            print(f"#   {url} {'up' if url in answering else 'DOWN'}")
        for key, value in record.get("env", {}).items():
            print(f"{key}={value}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bin/clusters", description="Local Redis Cluster and RabbitMQ cluster for failover tests."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--redis-port", type=int, default=REDIS_FIRST_PORT, help="first of 6 Redis ports")
    parser.add_argument("--rabbit-port", type=int, default=RABBIT_FIRST_PORT, help="first RabbitMQ port")
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parents[2] / "var" / "clusters"))
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {"up": _up, "down": _down, "status": _status}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())


class PrivateRabbit(RabbitCluster):
    """One RabbitMQ node of a test's own (not clustered), that a test may kill -9 and start again, leaving
    the machine's broker alone."""

    size = 1
    letters = "a"
