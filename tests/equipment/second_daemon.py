"""A second Docker host on this machine: a ``dockerd`` the tests start, own and remove.

Each daemon runs in a network namespace of its own (tests/equipment/netns.py) joined to the
machine by a veth link, and in a mount namespace of its own (its container mounts never show in
the machine's mount table). It keeps everything else on a tmpfs of its own mounted on one
temporary directory (quick to fill with an image, gone at once when unmounted): data root, exec
root, pid file, unix socket, config file, log and the TLS files. It listens on its unix socket and
on ``tcp://<its address>:2376`` with ``--tlsverify`` (a CA, server and client certificates the
tests make, tests/equipment/tls_files.py); its bridge has a subnet of its own, and its engines are
published on its address, so they are told apart from the machine daemon's by address alone.

:meth:`DockerDaemon.stop` (a shutdown) or :meth:`DockerDaemon.crash` (a power cut) and
:meth:`DockerDaemon.start` make the host go away and come back with its data root kept (its
containers are there again, stopped or restarted by their policy);
:meth:`DockerDaemon.disconnect` cuts the network link only (everything keeps running, nothing is
reachable). :func:`docker_daemon` removes it all at the end: containers, services, the swarm, the
daemon and its containerd, leftover processes, mounts and cgroups, the namespace (with its bridge
and netfilter rules) and the directory; and before it starts one, it erases the daemons of runs
that were killed (tests/equipment/host_traces.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.equipment import host_traces
from tests.equipment.netns import NETNS_DIR, Namespace, machine_networks, pick_subnets
from tests.equipment.tls_files import ClientTls, new_authority
from tests.support import need, need_docker, need_tool

TLS_PORT = 2376


class DaemonFailed(RuntimeError):
    """The daemon exited or did not answer; the message ends with its log."""


class DockerDaemon:
    """One test-owned ``dockerd``; ``name`` also names its namespace, cgroup parent and its
    containerd namespace (at most 11 characters)."""

    def __init__(self, name: str, root: Path, namespace: Namespace, client: ClientTls) -> None:
        self.name = name
        self.root = root
        self.namespace = namespace
        self.client_tls = client
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def unix_url(self) -> str:
        """Its ``DOCKER_HOST`` on this machine (no TLS: the socket is the tests' own file)."""
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self.namespace.address}:{TLS_PORT}"

    @property
    def https_url(self) -> str:
        """The same listener with its scheme spelled out: aiodocker speaks TLS to a ``tcp://``
        URL only when the TLS settings come from the environment or a Docker context, never
        with an ``ssl_context`` alone (docs/TESTING.md)."""
        return f"https://{self.namespace.address}:{TLS_PORT}"

    @property
    def engine_host(self) -> str:
        """The address its containers' published ports are reached at."""
        return self.namespace.address

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def endpoint(self, name: str, ports: str, max_engines: int) -> dict[str, Any]:
        """This daemon as an item of ``DOCKER_ENDPOINTS`` (over TCP with TLS)."""
        return {
            "name": name,
            "url": self.tcp_url,
            "tls": self.client_tls.as_json(),
            "engine_host": self.engine_host,
            "ports": ports,
            "max_engines": max_engines,
        }

    def start(self, timeout_s: float = 60) -> None:
        assert not self.running, "the daemon is already running"
        (self.root / "docker.pid").unlink(missing_ok=True)
        command = [*self.namespace.enter, "unshare", "--mount", "--propagation", "slave",
                   "dockerd", *self._flags()]  # fmt: skip
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if not self.running:
                raise DaemonFailed(f"dockerd {self.name} exited:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise DaemonFailed(f"dockerd {self.name} did not answer:\n{self._log_tail()}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        """Whether the daemon answers now (a starting daemon may hold the call unanswered: a
        restarted Swarm manager did here while it rejoined its swarm)."""
        try:
            return self.docker("version", check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout_s: float = 60) -> None:
        """The host goes away: dockerd stops its containers and exits (data root kept)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def crash(self) -> None:
        """The host loses power: the daemon, its containerd, shims, proxies and containers are
        killed at once (data root kept; a later :meth:`start` finds the containers exited and
        restarts those whose policy says so)."""
        proc, self._proc = self._proc, None
        pids = self._processes()
        host_traces.kill(pids)
        host_traces.wait_gone(pids, timeout_s=30)
        if proc is not None:
            proc.wait(30)

    def disconnect(self, silent: bool = True) -> None:
        """The host is cut off the network: it and its engines keep running, unreachable
        (``silent``: connections time out; else they fail at once)."""
        self.namespace.disconnect(silent)

    def reconnect(self) -> None:
        self.namespace.reconnect()

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon (its unix socket)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return subprocess.run(
            ["docker", "-H", self.unix_url, *args],
            env=env, capture_output=True, text=True, timeout=timeout, check=check,
        )  # fmt: skip

    def load_image(self, image: str) -> None:
        """Copies ``image`` from the machine's daemon into this one (``docker save | load``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=env)
        try:
            load = subprocess.run(
                ["docker", "-H", self.unix_url, "load", "-q"], stdin=save.stdout,
                capture_output=True, text=True, timeout=600, check=False, env=env,
            )  # fmt: skip
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait(600)
        if save.returncode != 0 or load.returncode != 0:
            raise DaemonFailed(f"loading {image} into {self.name}: {load.stderr.strip()}")

    def remove_labelled(self, label: str) -> None:
        """Removes the services (on a swarm manager) and containers labelled ``label``
        (``key=value``), as a test's cleanup on a host shared by the session."""
        services = self.docker("service", "ls", "-q", "--filter", f"label={label}", check=False)
        if services.returncode == 0 and services.stdout.split():
            self.docker("service", "rm", *services.stdout.split(), check=False)
        ids = self.docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def clear(self) -> None:
        """Leaves the swarm and removes every container (services go with the swarm)."""
        self.docker("swarm", "leave", "--force", check=False)
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def leftovers(self) -> list[str]:
        """What of this daemon is still on the machine (empty after :meth:`remove`)."""
        left = self.namespace.leftovers()
        left += [f"process {pid}" for pid in self._processes()]
        left += [f"mount {point}" for point in host_traces.mounts_under(self.root)]
        left += [f"cgroup {path}" for path in host_traces.cgroups(self.name)]
        words = [str(self.namespace.subnets.bridge), self.namespace.host_if]
        left += [f"netfilter rule {rule}" for rule in host_traces.netfilter_mentions(words)]
        if self.root.exists():
            left.append(f"directory {self.root}")
        return left

    def remove(self) -> None:
        """Everything goes: containers, daemon, processes, mounts, cgroups, namespace, files."""
        try:
            if self.running:
                self.clear()
        finally:
            self.stop()
            host_traces.erase(self.name, self.root)

    def _processes(self) -> list[int]:
        return host_traces.processes(self.root, NETNS_DIR / self.namespace.name, self.name)

    def _flags(self) -> list[str]:
        tls = self.root / "tls"
        return [
            f"--config-file={self.root / 'daemon.json'}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host={self.unix_url}",
            f"--host={self.tcp_url}",
            "--tlsverify",
            f"--tlscacert={self.client_tls.ca}",
            f"--tlscert={tls / 'server.pem'}",
            f"--tlskey={tls / 'server-key.pem'}",
            f"--bip={self.namespace.subnets.bridge_gateway}",
            f"--cgroup-parent=/{self.name}",
            f"--containerd-namespace={self.name}",
            f"--containerd-plugins-namespace={self.name}-plugins",
            "--shutdown-timeout=5",
        ]

    def _log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-20:])


def need_daemon_equipment() -> None:
    """What a test-owned Docker daemon needs: root, the machine's daemon (the images come from
    it) and the tools that make its namespaces and certificates (a skip, or under CI a failure)."""
    need_docker()
    need(os.geteuid() == 0, "root (a second dockerd and its network namespace)")
    need_tool("dockerd", "docker.io")
    need_tool("openssl", "openssl")
    need_tool("nsenter", "util-linux")
    need_tool("unshare", "util-linux")
    need_tool("ip", "iproute2")
    need_tool("iptables-save", "iptables")


@contextmanager
def docker_daemon(images: Sequence[str] = ()) -> Iterator[DockerDaemon]:
    """A started daemon with ``images`` loaded from the machine's daemon; removed at the end."""
    host_traces.sweep_abandoned(Path(tempfile.gettempdir()))
    name = f"agw{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    host_traces.mount_scratch(root)
    host_traces.claim(root)
    namespace = Namespace(name, pick_subnets(machine_networks(), random.Random()))
    host_traces.record_block(root, namespace.subnets.block)
    daemon: DockerDaemon | None = None
    try:
        namespace.create()
        authority = new_authority(root / "tls", "ca")
        authority.issue("server", server_ips=[namespace.address])
        (root / "daemon.json").write_text("{}\n")
        daemon = DockerDaemon(name, root, namespace, authority.client("client"))
        daemon.start()
        for image in images:
            daemon.load_image(image)
        yield daemon
    finally:
        if daemon is not None:
            daemon.remove()
        else:
            host_traces.erase(name, root)
