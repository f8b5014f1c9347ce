"""`fedtui join`: one client of a federation served from another host (`fedtui serve`).

Starts this client's `flower-supernode` (TLS to the server, authenticated with the client's key)
and its warm worker, as the deployment does for a local client, and follows them until the run
ends: the server's `finished` query reaches the ClientApp, which tells this process over its own
event channel (engine.net.channel, on loopback), as it tells it each training step. Everything the
server shows about this client travels in Flower's replies; the steps stay here, in the status
lines.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.core import events as ev
from engine.core.config import DEVICES
from engine.core.config_checks import is_device
from engine.core.errors import ConfigError
from engine.core.process_env import WORKER_SOCKET_ENV
from engine.flower import home as flower_home
from engine.ml.preflight import check_cuda
from engine.net.channel import EventHub
from engine.net.federation import Address, check_private_key
from engine.system.processes import CONTROL_PLANE_NICE, ProcessTable, TrackedProcess

TICK_S = 0.2
WORKER_RESTARTS = 3
# What the SuperNode's log says when it gives up, and what that means for the person joining.
REFUSALS = (
    ("Failed to activate SuperNode", "the server refused this client's key: it is not in "
     "the server's authorized_keys"),
    ("must be registered via the CLI", "the server requires a client key: --key"),
    ("CERTIFICATE_VERIFY_FAILED", "the server's TLS certificate does not verify against --ca"),
    ("SSL/TLS handshake", "TLS handshake with the server failed (wrong --ca?)"),
    ("requires a secure TLS connection", "a client key needs TLS: drop --insecure"),
    ("Unable to parse the private key", "--key is not a usable private key"),
)  # fmt: skip

Status = Callable[[str, bool], None]  # a line; True: a passing one (the next replaces it)


@dataclass(frozen=True)
class JoinSettings:
    server: Address
    partition: int
    ca: Path | None  # None: plain text (--insecure)
    key: Path | None
    device: str | None = None
    wait_s: float = 600.0

    def check(self) -> None:
        """Raise ConfigError for what would fail once started."""
        if self.partition < 0:
            raise ConfigError(f"--partition-id must be >= 0, got {self.partition}")
        if self.wait_s <= 0:
            raise ConfigError(f"--wait must be > 0 seconds, got {self.wait_s:g}")
        if self.device is not None:
            if not is_device(self.device):
                raise ConfigError(f"--device must be {DEVICES}; got {self.device!r}")
            if self.device.startswith("cuda"):
                check_cuda(self.device, "--device ")
        if self.ca is None:
            if self.key is not None:
                raise ConfigError("--key needs TLS: drop --insecure, give --ca")
            return
        if not self.ca.is_file():
            raise ConfigError(f"--ca {self.ca}: no such file (the server's ca.pem)")
        if self.key is None:
            raise ConfigError("--key: this client's private key (fedtui serve wrote client-I.key)")
        check_private_key(self.key)


class ClientHost:
    def __init__(self, settings: JoinSettings, status: Status) -> None:
        self.settings = settings
        self._status = status
        flower_home.remove_orphans()
        self._root = flower_home.temp_folder("join", f"{settings.partition}-")
        self._processes = ProcessTable(lambda process: None, lambda process: None)
        self._events: list[ev.Event] = []
        self._lock = threading.Lock()
        self._hub = EventHub(self._on_event)
        self._stop = threading.Event()

    def stop(self) -> None:
        """End this client now (Ctrl+C): from any thread."""
        self._stop.set()

    def run(self) -> int:
        """0 when the run ended, 1 when the server could not be joined or was lost, 130 when
        stopped here."""
        try:
            flower_home.write_guards(self._root)
            flower_home.write_relay(self._root)
            worker = self._start_worker()
            supernode = self._start_supernode()
            self._status(
                f"joining {self.settings.server} as client {self.settings.partition}", False
            )
            return self._follow(supernode, worker)
        finally:
            self._processes.terminate_all(grace_s=3.0)
            self._hub.close()
            shutil.rmtree(self._root, ignore_errors=True)

    def _follow(self, supernode: TrackedProcess, worker: TrackedProcess) -> int:
        node: str | None = None
        restarts = 0
        while not self._stop.is_set():
            self._processes.scan()
            for event in self._take_events():
                if event["type"] == ev.RUN_FINISHED:
                    self._status(f"run {event['status']}: leaving", False)
                    return 0
                self._show_progress(event)
            if node is None and (node := self._node_id()) is not None:
                self._status(f"connected to {self.settings.server} as node {node}", False)
            if supernode.popen is not None and supernode.popen.poll() is not None:
                self._status(
                    f"error: {why_supernode_ended(self._log('supernode.log'), self.settings)}",
                    False,
                )
                return 1
            if worker.popen is not None and worker.popen.poll() is not None:
                why = why_worker_ended(self._log("worker.log"), worker.popen.returncode)
                if restarts == WORKER_RESTARTS:
                    self._status(f"error: the worker keeps dying: {why}", False)
                    return 1
                restarts += 1
                self._status(f"{why}: restarting", False)
                worker = self._start_worker()
            time.sleep(TICK_S)
        self._status("stopped here: leaving the run", False)
        return 130

    def _show_progress(self, event: ev.Event) -> None:
        if event["type"] != ev.CLIENT_PROGRESS:
            return
        step, total = event["step"], event["steps_total"]
        loss = f", loss {event['loss']:.4f}" if event.get("loss") is not None else ""
        if step == total:
            self._status(f"round {event['round']}: trained {total} steps{loss}; update sent", False)
        else:
            self._status(f"round {event['round']}: training, step {step}/{total}{loss}", True)

    def _start_worker(self) -> TrackedProcess:
        return self._processes.spawn(
            "worker",
            [*flower_home.WORKER, "--client", str(self.settings.partition)],
            env=flower_home.for_training(self._environment()),
            client=self.settings.partition,
            log_path=self._root / "worker.log",
        )

    def _start_supernode(self) -> TrackedProcess:
        settings = self.settings
        if settings.ca is None or settings.key is None:
            security = ["--insecure"]
        else:
            security = [
                "--root-certificates",
                str(settings.ca.absolute()),
                "--auth-supernode-private-key",
                str(settings.key.absolute()),
            ]
        identity = f'address="{_own_address(settings.server)}" host="{socket.gethostname()}"'
        device = f' device="{settings.device}"' if settings.device else ""
        return self._processes.spawn(
            "supernode",
            [
                *flower_home.SUPERNODE,
                *security,
                "--superlink",
                str(settings.server),
                "--port",
                str(flower_home.free_port()),
                "--max-wait-time",
                f"{settings.wait_s:g}",
                "--node-config",
                f"partition-id={settings.partition} {identity}{device}",
            ],
            env=self._environment(),
            client=settings.partition,
            log_path=self._root / "supernode.log",
            nice=CONTROL_PLANE_NICE,
        )

    def _environment(self) -> dict[str, str]:
        extra = {**self._hub.environment(), WORKER_SOCKET_ENV: str(self._root / "worker.sock")}
        env = flower_home.environment(self._root, self._root / "supernode", extra)
        return flower_home.with_relay(env, self._root)

    def _node_id(self) -> str | None:
        found = flower_home.NODE_ID_LINE.search(self._log("supernode.log"))
        return found.group(1) if found else None

    def _log(self, name: str) -> str:
        """A process's log (gone with this host's temporary folder when it exits)."""
        try:
            return (self._root / name).read_text(errors="replace")
        except OSError:
            return ""

    def _on_event(self, event: ev.Event) -> None:
        with self._lock:
            self._events.append(event)

    def _take_events(self) -> list[ev.Event]:
        with self._lock:
            taken, self._events = self._events, []
        return taken


def why_supernode_ended(log: str, settings: JoinSettings) -> str:
    """What the SuperNode's log says about why it gave up, for the person joining."""
    for needle, meaning in REFUSALS:
        if needle in log:
            return meaning
    if "Giving up reconnection" in log:
        hint = " (a server with TLS does not answer --insecure)" if settings.ca is None else ""
        return f"no answer from {settings.server} within {settings.wait_s:g} s{hint}"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    telling = [line for line in lines if "error" in line.lower() or "code" in line.lower()]
    return f"flower-supernode exited: {(telling or lines or ['no output'])[-1]}"


def why_worker_ended(log: str, returncode: int) -> str:
    """The worker's exit in one line: its code and its log's last line (a traceback's last
    line is the exception)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return f"the worker exited ({returncode}): {(lines or ['no output'])[-1]}"


def _own_address(server: Address) -> str:
    """This host's address on the way to the server (no packet is sent)."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((server.host, server.port))
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostname()
