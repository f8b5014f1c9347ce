"""The run controller: launches Flower's processes, records the run, and steers it.

    controller = RunController(config, runs_dir="runs")
    controller.subscribe(print)          # each event, as written to events.jsonl
    controller.start()
    controller.request_stop()            # end after the current round: status "stopped"
    controller.change_config({"local_epochs": 2})   # from the next round: config_changed events
    controller.hold(); controller.continue_run()    # nothing trains in between
    controller.abort()                   # end every process now: status "aborted"
    controller.wait()                    # -> final status

    RunController.resume("runs/<id>").start()   # a stopped run goes on from its last model

Other processes steer it through `runs/<id>/control.sock` (engine.net.control_socket): stop, abort,
config changes, hold and continue (engine.run.steering), and `detach`, which cuts its leash: a
controller started for a TUI in another process (`leash_pid`) aborts when that process dies
without detaching first.

It relays the apps' events into the record (`EventRecorder`, engine.record.recorder, the single
writer of `runs/<id>/events.jsonl`). Its supervisor thread has `RunSupervisor`
(engine.run.supervisor) prepare the data, start Flower and watch every process, and at the end
terminate every process the run started, by PID; it then writes the run's last events. What may be
resumed, and how, is `engine.run.resume`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from engine.core import commands, events as ev
from engine.core.config import RunConfig
from engine.core.config_files import to_toml
from engine.core.errors import FedtuiError
from engine.core.status import Status
from engine.flower.deployment import ServerGone
from engine.ml import preflight
from engine.net import federation
from engine.net.channel import EventHub
from engine.net.control_socket import ControlServer, steer
from engine.net.federation import ServerFiles, ServeSettings
from engine.record import durable, run_lock
from engine.record.recorder import EventRecorder, Subscriber
from engine.record.run_folders import EVENTS_FILE, new_run_id
from engine.record.trackers.live_mirror import LiveMirror
from engine.run import run_end
from engine.run.fork import ForkOrigin
from engine.run.resume import ResumeState, resume_point
from engine.run.run_end import RecordFailed
from engine.run.steering import Acknowledged, RunSteering
from engine.run.supervisor import RunSupervisor
from engine.system.leash import Leash
from engine.system.processes import ProcessTable, TrackedProcess

TERMINATE_GRACE_S = 5.0

log = logging.getLogger(__name__)


class RunAborted(Exception):
    """The user aborted the run while it was starting."""


class RunController:
    def __init__(
        self,
        config: RunConfig,
        runs_dir: str | Path = "runs",
        run_id: str | None = None,
        leash_pid: int | None = None,
        serve: ServeSettings | None = None,
        fork: ForkOrigin | None = None,
    ) -> None:
        """`serve`: the clients are on other hosts and join through `fedtui join`; `fork`: the
        run's round 0 is another run's global model (engine.run.fork)."""
        self.config = config
        self.serve = serve
        self.fork = fork
        self._server_files: ServerFiles | None = None
        self.run_id = run_id or new_run_id(config, Path(runs_dir))
        self.run_dir = Path(runs_dir) / self.run_id
        self.status: str = Status.CREATED
        self.input_error: FedtuiError | None = None
        self._record = EventRecorder(self.run_dir / EVENTS_FILE)
        self._stop_requested = False
        self._abort = threading.Event()
        self._finished = threading.Event()
        self._server_outcome: ev.Event | None = None
        self._hub: EventHub | None = None
        self._processes = ProcessTable(self._record_process, self._record_process)
        self._thread = threading.Thread(target=self._supervise, name="run-supervisor", daemon=True)
        self._started_at = 0.0
        self._resume: ResumeState | None = None
        self._round_in_progress: int | None = None
        self._inputs_checked = False
        self._control: ControlServer | None = None
        self._hold: run_lock.Hold | None = None
        self._leash = Leash(leash_pid) if leash_pid is not None else None
        self._steering = RunSteering(
            config, self.run_dir, self._send_to_server, lambda: self.finished
        )

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        overrides: list[str] | tuple[str, ...] = (),
        leash_pid: int | None = None,
        serve: ServeSettings | None = None,
    ) -> RunController:
        """A controller that continues a stopped run from its last global model, appending to
        the same events file. `overrides` may raise `rounds` or change early stopping; `serve`:
        a served run's clients join again from other hosts."""
        run_dir = Path(run_dir)
        config, state = resume_point(run_dir, overrides, served=serve is not None)
        controller = cls(
            config, run_dir.parent, run_id=run_dir.name, leash_pid=leash_pid, serve=serve
        )
        controller._resume = state
        return controller

    # -- public API -------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber(event)` for every event from now on (from engine threads)."""
        self._record.subscribe(subscriber)

    def check_inputs(self, progress: Callable[[str], None] = lambda message: None) -> None:
        """Refuse (ConfigError, one line) what would fail the run on this machine, before its
        folder or any process exists (engine.ml.preflight). `start()` does it unless done: an
        entry point may do it earlier, to report progress or keep it off a UI thread."""
        preflight.check(self.config, progress)
        if self.serve is not None:
            self.serve.check_listen()
            progress(f"preparing certificates and keys in {self.serve.folder}")
            self._prepare_federation()
        self._inputs_checked = True

    def _prepare_federation(self) -> None:
        if self.serve is not None and not self.serve.insecure:
            self._server_files = federation.prepare_server(
                self.serve.folder, self.serve.listen, self.config.num_clients
            )

    def inputs_already_checked(self) -> None:
        """The process that handed this run over (tui.detached) checked them moments ago."""
        self._prepare_federation()  # written then: read back
        self._inputs_checked = True

    def start(self) -> RunController:
        if not self._inputs_checked:
            self.check_inputs()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Before anything is written: one controller per run (RunHeld names the one there).
        self._hold = run_lock.hold(self.run_dir)
        if self._resume is None and (self.run_dir / EVENTS_FILE).exists():
            self._hold.release()
            raise FedtuiError(f"run folder {self.run_dir} already holds a run")
        (self.run_dir / "logs").mkdir(exist_ok=True)
        durable.replace_text(self.run_dir / durable.CONFIG_FILE, to_toml(self.config))
        self._record.open()
        self.status = Status.RUNNING
        self._started_at = time.time()
        self._hub = EventHub(self._on_app_event, self._on_app_hello)
        self._control = ControlServer(self.run_dir, lambda request: steer(self, request))
        if self.config.report_to:  # experiment trackers get each round as it ends
            self.subscribe(LiveMirror(self.config.report_to, self.run_dir, self._emit))
        fields = {"config": self.config.to_dict(), "version": _version()}
        if self._resume is not None:
            self._emit(ev.make(ev.RUN_RESUMED, from_round=self._resume["round"], **fields))
        else:
            if self.fork is not None:
                fields["forked_from"] = self.fork.recorded()
            self._emit(ev.make(ev.RUN_STARTED, run_id=self.run_id, **fields))
        run_end.unfinished.add(self._processes)
        self._thread.start()
        return self

    def request_stop(self, source: str = "user") -> None:
        """Finish the current round, evaluate it, then end the run with status `stopped`."""
        if self._stop_requested or self._finished.is_set():
            return
        self._stop_requested = True
        self.status = Status.STOPPING
        self._emit(ev.make(ev.STOP_REQUESTED, source=source))
        self._send_to_server(commands.make(commands.STOP))

    def change_config(self, changes: dict[str, Any], source: str = "user") -> Acknowledged:
        """Change live keys from the next round on (engine.run.steering): the `config_changed`
        events that say from which round; ConfigError, changing nothing, for a refused one. It
        waits for the ServerApp's answer, which is recorded: never call it from a subscriber."""
        return self._steering.change(changes, source)

    def hold(self, source: str = "user") -> None:
        """Hold the run after its current round; `continue_run` goes on."""
        self._steering.hold(source)

    def continue_run(self, source: str = "user") -> None:
        self._steering.continue_run(source)

    def abort(self) -> None:
        """End every process now; rounds already recorded stay recorded."""
        self._abort.set()

    def detach(self) -> None:
        """Cut the leash: the run goes on whatever becomes of the process that started it."""
        if self._leash is not None:
            self._leash = None
            self._notice("detached: the run goes on in the background")

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
        """The run, then its end (engine.run.run_end), which always comes: `finished` is set
        whatever happened, a full disk included."""
        status: str = Status.FAILED
        error: str | None = None
        try:
            status, error = self._run_to_the_end()
        except BaseException as err:  # _run_to_the_end reports all it expects
            error = f"controller failed: {err!r}"
        finally:
            try:
                failure = self._record.failure
                if failure is not None:  # nothing after it was kept: the run did not work
                    status = Status.FAILED
                    error = error or str(RecordFailed(self._record.path, failure))
                self.status = status
                seconds = time.time() - self._started_at
                run_end.write_end(self._record, status, error, self._server_outcome or {}, seconds)
            finally:
                if self._hold is not None:
                    self._hold.release()
                self._finished.set()
                run_end.unfinished.discard(self._processes)

    def _run_to_the_end(self) -> tuple[str, str | None]:
        """The supervisor's run, then every process ended: its status and error (None if none)."""
        status: str = Status.FAILED
        error: str | None = None
        grace_s = TERMINATE_GRACE_S
        supervisor = RunSupervisor(
            self.config,
            self.run_dir,
            self._processes,
            app_environment=self._require_hub().environment(),
            resume=self._resume,
            start=self.fork.start() if self.fork and self._resume is None else None,
            serve=self.serve,
            server_files=self._server_files,
            emit=self._emit,
            send_to_server=self._send_to_server,
            check_abort=self._check_abort,
            server_outcome=lambda: self._server_outcome,
            current_round=lambda: self._round_in_progress,
        )
        try:
            status = supervisor.run()
        except RunAborted:
            status = Status.ABORTED
        except FedtuiError as err:
            self.input_error, error = err, str(err)
        except (ServerGone, RecordFailed) as err:
            # Nothing is left to end gracefully: what the clients would finish goes nowhere.
            error, grace_s = str(err), 0.0
        except Exception as err:  # the record must say what happened, whatever it was
            error = f"controller failed: {err!r}"
            log.debug("controller failure", exc_info=True)
            run_end.crash_report(self.run_dir)
        finally:
            run_end.each(
                [
                    lambda: supervisor.end_processes(grace_s),
                    self._require_hub().close,
                    self._control.close if self._control is not None else lambda: None,
                    supervisor.clean_up,
                ]
            )
        return status, error

    def _check_abort(self) -> None:
        if not self._abort.is_set() and self._leash is not None and self._leash.holder_gone:
            self._notice(
                f"the TUI that started this run (pid {self._leash.pid}) is gone without "
                f"detaching: aborting"
            )
            self._abort.set()
        if self._abort.is_set():
            raise RunAborted()
        if self._record.failure is not None:
            raise RecordFailed(self._record.path, self._record.failure)

    # -- events -----------------------------------------------------------------------------

    def _on_app_event(self, event: ev.Event) -> None:
        if event["type"] == ev.RUN_FINISHED:
            self._server_outcome = event  # written once every process is gone
            return
        if event["type"] == ev.ROUND_STARTED:
            self._round_in_progress = event["round"]
        elif event["type"] == ev.ROUND_DONE:
            self._round_in_progress = None
        elif (training := commands.training_of(event)) is not None:
            self._send_to_server(training)
        self._emit(event)
        self._steering.on_server_event(event)

    def _on_app_hello(self, hello: dict[str, Any]) -> None:
        """Tell the ServerApp which client a node is, so even a client that crashes before its
        first reply is named in the error."""
        if hello.get("role") == "client" and hello.get("node_id") is not None:
            self._send_to_server(
                commands.make(
                    commands.CLIENT_OF_NODE, node_id=hello["node_id"], client=hello["client"]
                )
            )

    def _record_process(self, process: TrackedProcess) -> None:
        self._emit(process.event())

    def _notice(self, message: str) -> None:
        self._emit(ev.make(ev.NOTICE, message=message))

    def _emit(self, event: ev.Event) -> None:
        self._record.write(event)

    def _send_to_server(self, command: dict[str, Any]) -> None:
        self._require_hub().send_to_server(command)

    def _require_hub(self) -> EventHub:
        if self._hub is None:
            raise RuntimeError("the run has not been started")
        return self._hub


def _version() -> str:
    try:
        return version("fedtui")
    except PackageNotFoundError:
        return "unknown"
