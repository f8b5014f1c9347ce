"""The run controller: launches Flower's processes, records the run, and steers it.

    controller = RunController(config, runs_dir="runs")
    controller.subscribe(print)          # each event, as written to events.jsonl
    controller.start()
    controller.request_stop()            # end after the current round: status "stopped"
    controller.set_early_stopping(patience=3)  # the ServerApp applies it and says so
    controller.abort()                   # end every process now: status "aborted"
    controller.wait()                    # -> final status

    RunController.resume("runs/<id>").start()   # a stopped run goes on from its last model

The controller is the single writer of `runs/<id>/events.jsonl`. Its supervisor thread prepares
the data, starts `flower-superlink` and one `flower-supernode` per client on free loopback
ports (each with its own FLWR_HOME), submits the Flower app with `flwr run`, relays the apps'
events, and at the end terminates every process the run started, by PID.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from engine import checkpoints, data, events as ev
from engine.channel import EventHub
from engine.config import RunConfig, load_config, to_toml
from engine.errors import ConfigError, FedtuiError
from engine.flower.client_app import threads_per_client
from engine.flower.run_config import to_run_config
from engine.flower.server_app import RESUME_ENV, RUN_DIR_ENV
from engine.gpu import GpuSampler
from engine.memory import ClientMemorySampler
from engine.processes import ProcessTable, TrackedProcess
from engine.runs import EVENTS_FILE, open_run

Subscriber = Callable[[ev.Event], None]

APP_DIR = Path(__file__).parent / "flower" / "app"
CONNECTION_NAME = "fedtui"
SUPERLINK_START_TIMEOUT_S = 60.0
SUBMIT_TIMEOUT_S = 120.0
SERVERAPP_GONE_GRACE_S = 3.0
TICK_S = 0.25
SAMPLE_EVERY_S = 1.0
ROOT_ROLES = ("superlink", "supernode")
RESUMABLE = ("stopped", "aborted", "failed")
# What may change when a run resumes; everything else would make it a different run.
RESUME_OVERRIDABLE = ("rounds", "round_timeout", "device", "threads_per_client", "early_stopping")

log = logging.getLogger(__name__)


class RunAborted(Exception):
    """The user aborted the run while it was starting."""


class RunController:
    def __init__(self, config: RunConfig, runs_dir: str | Path = "runs",
                 run_id: str | None = None) -> None:
        self.config = config
        self.run_id = run_id or new_run_id(config, Path(runs_dir))
        self.run_dir = Path(runs_dir) / self.run_id
        self.status = "created"
        self.input_error: FedtuiError | None = None
        self._subscribers: list[Subscriber] = []
        self._write_lock = threading.RLock()  # subscribers may call back (request_stop)
        self._events_file = None
        self._stop_requested = False
        self._abort = threading.Event()
        self._finished = threading.Event()
        self._server_outcome: ev.Event | None = None
        self._hub: EventHub | None = None
        self._processes = ProcessTable(self._on_process_started, self._on_process_exited)
        self._thread = threading.Thread(target=self._supervise, name="run-supervisor",
                                        daemon=True)
        self._started_at = 0.0
        self._resume: dict | None = None
        self._gpu: GpuSampler | None = None
        self._memory: ClientMemorySampler | None = None

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()
               ) -> RunController:
        """A controller that continues a stopped run from its last global model, appending to
        the same events file. `overrides` may raise `rounds` or change early stopping."""
        run_dir = Path(run_dir)
        state = open_run(run_dir)
        if state.status not in RESUMABLE:
            raise FedtuiError(f"run {run_dir.name} is {state.status}: only a stopped, aborted or "
                              f"failed run can be resumed")
        last = checkpoints.read_info(run_dir / "checkpoints" / "last")
        if last is None:
            raise FedtuiError(f"run {run_dir.name} has no saved global model to resume from")
        for item in overrides:
            if item.partition("=")[0].split(".")[0].strip() not in RESUME_OVERRIDABLE:
                raise ConfigError(f"--set {item}: a resumed run can only change "
                                  f"{', '.join(RESUME_OVERRIDABLE)}")
        config = load_config(run_dir / "config.toml", overrides)
        if last["round"] >= config.rounds:
            raise FedtuiError(f"run {run_dir.name} already has {last['round']} of "
                              f"{config.rounds} rounds; --set rounds=N to go further")
        controller = cls(config, run_dir.parent, run_id=run_dir.name)
        controller._resume = {"round": last["round"], "best_round": state.best_round,
                              "best_eval_loss": state.best_eval_loss,
                              "rounds_without_improvement": state.rounds_without_improvement}
        return controller

    # -- public API -------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber(event)` for every event from now on (from engine threads)."""
        self._subscribers.append(subscriber)

    def start(self) -> RunController:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=self._resume is not None)
        (self.run_dir / "config.toml").write_text(to_toml(self.config), encoding="utf-8")
        events_path = self.run_dir / EVENTS_FILE
        if self._resume is not None:
            _drop_torn_tail(events_path)
        self._events_file = open(events_path, "a", encoding="utf-8")
        self.status = "running"
        self._started_at = time.time()
        self._hub = EventHub(self._on_app_event, self._on_app_hello)
        if self._resume is None:
            self._emit(ev.make(ev.RUN_STARTED, run_id=self.run_id, config=self.config.to_dict(),
                               version=_version()))
        else:
            self._emit(ev.make(ev.RUN_RESUMED, from_round=self._resume["round"],
                               config=self.config.to_dict(), version=_version()))
        _running.add(self)
        self._thread.start()
        return self

    def request_stop(self, source: str = "user") -> None:
        """Finish the current round, evaluate it, then end the run with status `stopped`."""
        if self._stop_requested or self._finished.is_set():
            return
        self._stop_requested = True
        self.status = "stopping"
        self._emit(ev.make(ev.STOP_REQUESTED, source=source))
        self._hub.send_to_server({"command": "stop"})

    def set_early_stopping(self, enabled: bool | None = None, patience: int | None = None
                           ) -> None:
        """Change automatic early stopping of the live run; the ServerApp applies it before its
        next decision and records an `early_stopping_changed` event."""
        if patience is not None and patience < 1:
            raise ConfigError(f"patience must be >= 1, got {patience}")
        if not self._finished.is_set():
            self._hub.send_to_server({"command": "early_stopping", "enabled": enabled,
                                      "patience": patience})

    def abort(self) -> None:
        """End every process now; rounds already recorded stay recorded."""
        self._abort.set()

    def wait(self, timeout: float | None = None) -> str | None:
        """The final status once the run has ended and every process is gone, else None."""
        self._finished.wait(timeout)
        return self.status if self._finished.is_set() else None

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def pids(self) -> list[int]:
        """Every PID this run has started, alive or not."""
        return [process.pid for process in self._processes.all()]

    # -- supervisor thread ------------------------------------------------------------------

    def _supervise(self) -> None:
        status, error = "failed", None
        flwr_home = Path(tempfile.mkdtemp(prefix=f"fedtui-flwr-{self.run_id}-"))
        try:
            self._gpu = GpuSampler()
            self._memory = ClientMemorySampler(self._gpu, self.config.num_clients)
            if self._gpu.unavailable:
                self._notice(f"no NVIDIA GPU: VRAM unavailable ({self._gpu.unavailable}); "
                             f"showing host RSS per client")
            self._notice("preparing data")
            data.prepare(self.config, progress=self._notice)
            self._check_abort()
            superlink_port = self._start_superlink(flwr_home)
            self._start_supernodes(flwr_home, superlink_port)
            self._submit(flwr_home, superlink_port)
            status = self._watch()
        except RunAborted:
            status = "aborted"
        except FedtuiError as err:
            self.input_error, error = err, str(err)
        except Exception as err:  # the record must say what happened, whatever it was
            error = f"controller failed: {err!r}"
            log.debug("controller failure", exc_info=True)
            (self.run_dir / "logs" / "controller.log").write_text(traceback.format_exc())
        finally:
            self._processes.terminate_all()
            self._hub.close()
            if self._gpu is not None:
                self._gpu.close()
            shutil.rmtree(flwr_home, ignore_errors=True)
        if error:
            self._emit(ev.make(ev.ERROR, source="controller", message=error))
        outcome = self._server_outcome or {}
        self.status = status
        self._emit(ev.make(ev.RUN_FINISHED, status=status,
                           rounds_completed=outcome.get("rounds_completed"),
                           best_round=outcome.get("best_round"),
                           best_eval_loss=outcome.get("best_eval_loss"),
                           seconds=time.time() - self._started_at))
        self._events_file.close()
        self._finished.set()
        _running.discard(self)

    def _start_superlink(self, flwr_home: Path) -> int:
        port = _free_port()
        self._notice(f"starting flower-superlink on 127.0.0.1:{port}")
        self._processes.spawn("superlink", [
            _flower_program("flower-superlink"), "--insecure", "--host", "127.0.0.1",
            "--port", str(port), "--disable-runtime-dependency-installation",
        ], env=self._environment(flwr_home / "superlink"),
            log_path=self.run_dir / "logs" / "superlink.log")
        deadline = time.monotonic() + SUPERLINK_START_TIMEOUT_S
        while not _healthy(port):
            self._check_abort()
            self._check_roots_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"flower-superlink did not answer on port {port} within "
                                   f"{SUPERLINK_START_TIMEOUT_S:g}s (see logs/superlink.log)")
            time.sleep(0.2)
        return port

    def _start_supernodes(self, flwr_home: Path, superlink_port: int) -> None:
        threads = str(threads_per_client(self.config.threads_per_client, self.config.num_clients))
        gpus = self.config.client_gpus or list(range(self._gpu.device_count))
        for client in range(self.config.num_clients):
            env = self._environment(flwr_home / f"supernode-{client}")
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            if gpus and self.config.device != "cpu":  # pin: client k on gpus[k mod n]
                env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID",
                           CUDA_VISIBLE_DEVICES=str(gpus[client % len(gpus)]))
            self._processes.spawn("supernode", [
                _flower_program("flower-supernode"), "--insecure",
                "--superlink", f"127.0.0.1:{superlink_port}", "--port", str(_free_port()),
                "--node-config",
                f"partition-id={client} num-partitions={self.config.num_clients}",
            ], env=env, client=client,
                log_path=self.run_dir / "logs" / f"supernode-{client}.log")
        self._notice(f"started {self.config.num_clients} flower-supernode processes")

    def _submit(self, flwr_home: Path, superlink_port: int) -> None:
        cli_home = flwr_home / "cli"
        cli_home.mkdir(parents=True)
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n'
            f'[superlink.{CONNECTION_NAME}]\naddress = "127.0.0.1:{superlink_port}"\n'
            f'insecure = true\n', encoding="utf-8")
        overrides = cli_home / "run-config.toml"
        overrides.write_text("".join(f'{key} = "{value}"\n'
                                     for key, value in to_run_config(self.config).items()))
        self._notice("submitting the Flower app")
        completed = subprocess.run(
            [_flower_program("flwr"), "run", str(APP_DIR), CONNECTION_NAME,
             "--run-config", str(overrides), "--format", "json"],
            env=self._environment(cli_home), capture_output=True, text=True,
            timeout=SUBMIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
        (self.run_dir / "logs" / "flwr-run.log").write_text(completed.stdout + completed.stderr)
        try:
            reply = json.loads(completed.stdout)
        except json.JSONDecodeError:
            reply = {}
        if completed.returncode != 0 or not reply.get("success", False):
            raise RuntimeError(f"flwr run failed (see logs/flwr-run.log): "
                               f"{(completed.stdout + completed.stderr).strip()[-300:]}")
        self._notice(f"Flower run {reply.get('run-id')} submitted")

    def _watch(self) -> str:
        """Wait until the ServerApp reports the end, a process dies, or the user aborts."""
        serverapp_gone_at: float | None = None
        next_sample = time.monotonic()
        while True:
            self._processes.scan()
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY_S
                self._sample_memory()
            self._check_abort()
            self._check_roots_alive()
            if self._server_outcome is not None:
                return self._server_outcome["status"]
            serverapps = [p for p in self._processes.all() if p.role == "serverapp"]
            if serverapps and not any(p.alive for p in serverapps):
                serverapp_gone_at = serverapp_gone_at or time.monotonic()
                if time.monotonic() - serverapp_gone_at > SERVERAPP_GONE_GRACE_S:
                    raise RuntimeError("the ServerApp exited without finishing the run "
                                       "(see logs/serverapp.log and logs/superlink.log)")
            time.sleep(TICK_S)

    def _sample_memory(self) -> None:
        owners = {p.pid: p.client for p in self._processes.alive() if p.client is not None}
        for event in self._memory.sample(owners):
            self._emit(event)

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise RunAborted()

    def _check_roots_alive(self) -> None:
        for process in self._processes.all():
            if process.role in ROOT_ROLES and process.popen is not None \
                    and process.popen.poll() is not None:
                raise RuntimeError(f"{process.label} (pid {process.pid}) exited with code "
                                   f"{process.popen.returncode} (see logs/{_log_name(process)})")

    def _environment(self, flwr_home: Path) -> dict[str, str]:
        flwr_home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(FLWR_HOME=str(flwr_home), FLWR_TELEMETRY_ENABLED="0",
                   FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        env[RUN_DIR_ENV] = str(self.run_dir.resolve())
        if self._resume is not None:
            env[RESUME_ENV] = json.dumps(self._resume)
        env.update(self._hub.environment())
        return env

    # -- events -----------------------------------------------------------------------------

    def _on_app_event(self, event: ev.Event) -> None:
        if event["type"] == ev.RUN_FINISHED:
            self._server_outcome = event  # written once every process is gone
            return
        self._emit(event)

    def _on_app_hello(self, hello: dict) -> None:
        """Tell the ServerApp which client a node is, so even a client that crashes before its
        first reply is named in the error."""
        if hello.get("role") == "client" and hello.get("node_id") is not None:
            self._hub.send_to_server({"command": "client_of_node", "node_id": hello["node_id"],
                                      "client": hello["client"]})

    def _on_process_started(self, process: TrackedProcess) -> None:
        self._emit(ev.make(ev.PROCESS_STARTED, role=process.role, pid=process.pid,
                           client=process.client))

    def _on_process_exited(self, process: TrackedProcess) -> None:
        self._emit(ev.make(ev.PROCESS_EXITED, role=process.role, pid=process.pid,
                           client=process.client, returncode=process.returncode))

    def _notice(self, message: str) -> None:
        self._emit(ev.make(ev.NOTICE, message=message))

    def _emit(self, event: ev.Event) -> None:
        with self._write_lock:
            stamped = ev.stamp(event)
            self._events_file.write(ev.encode(stamped))
            self._events_file.flush()
            for subscriber in self._subscribers:
                try:
                    subscriber(stamped)
                except Exception:  # a broken view must not break the record
                    log.exception("event subscriber failed")


_running: weakref.WeakSet[RunController] = weakref.WeakSet()


@atexit.register
def _end_processes_of_unfinished_runs() -> None:
    """fedtui is exiting (its supervisor threads die with it): end what they started."""
    for controller in list(_running):
        controller._processes.terminate_all(grace_s=2.0)


def new_run_id(config: RunConfig, runs_dir: Path) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config.name or config.strategy}".replace("/", "-").replace(" ", "-")
    run_id, suffix = base, 1
    while (runs_dir / run_id).exists():
        suffix += 1
        run_id = f"{base}-{suffix}"
    return run_id


def _drop_torn_tail(path: Path) -> None:
    """A crash can leave half a line at the end; appending after it would corrupt the file."""
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        path.write_bytes(content[:content.rfind(b"\n") + 1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(port: int) -> bool:
    try:
        with _LOOPBACK.open(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _flower_program(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


def _log_name(process: TrackedProcess) -> str:
    return f"{process.role}.log" if process.client is None else f"{process.role}-{process.client}.log"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedtui")
    except PackageNotFoundError:
        return "unknown"
