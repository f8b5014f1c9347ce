"""A sweep: every combination of a few config values, each one a normal run in the sweep's folder.

    sweep = Sweep.plan("default", ["rounds=2"], ["proximal_mu=0.01,1.0"], "runs")
    sweep.start().wait()

    runs/<sweep-id>/sweep.json        the sweep record: its grid, base config, members, status
    runs/<sweep-id>/<member>/         each member's run folder, as `fedtui run` writes one

A member is named by its grid values (`proximal_mu=0.01`, `proximal_mu=1.0,seed=1`). Members
run one after another, or `parallel` at a time; early stopping applies to each. A stop ends the
members running now after their round and starts no other; an abort ends them now.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config, parse_override
from engine.core.errors import ConfigError, RunFolderError
from engine.core.status import Status
from engine.record.run_folders import EVENTS_FILE, SWEEP_FILE, csv_text, new_run_id
from engine.record.run_state import RunState
from engine.run.controller import RunController
from engine.run.fork import ForkOrigin, fork_point

# A member event is delivered as (member name, event).
MemberSubscriber = Callable[[str, ev.Event], None]


@dataclass
class Member:
    name: str
    overrides: list[str]  # the grid's values, as --set items
    config: RunConfig
    status: str = Status.PENDING  # then the member run's own status
    fork: ForkOrigin | None = None  # `--from`: where the member's round 0 comes from


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """`KEY=V1,V2,...` items as (key, values); ConfigError for a malformed or repeated one."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        values = [value.strip() for value in text.split(",")]
        if not sep or not key.strip() or not all(values):
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        key = key.strip()
        if any(key == known for known, _ in grid):
            raise ConfigError(f"--grid names {key!r} twice")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key} repeats a value: {text}")
        grid.append((key, values))
    if not grid:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def plan_members(
    source: str | None,
    overrides: list[str],
    grid: list[tuple[str, list[str]]],
    fork: str | None = None,
) -> list[Member]:
    """One member per combination of the grid's values, each config resolved (and refused in
    one line, naming the member, when a value is bad); with `fork` (RUN[@ROUND]), each member a
    fork of that run."""
    keys = [key for key, _ in grid]
    members = []
    for values in itertools.product(*(values for _, values in grid)):
        settings = [f"{key}={value}" for key, value in zip(keys, values)]
        name = ",".join(settings).replace("/", "-")
        items = [*overrides, *settings, f"name={name}"]
        try:
            if fork is None:
                members.append(Member(name, settings, load_config(source, items)))
            else:
                config, origin = fork_point(fork, source, items)
                members.append(Member(name, settings, config, fork=origin))
        except ConfigError as err:
            raise ConfigError(f"sweep member {name}: {err}") from None
    return members


class Sweep:
    def __init__(
        self,
        members: list[Member],
        runs_dir: str | Path,
        *,
        grid: list[tuple[str, list[str]]],
        base: dict[str, Any],
        parallel: int = 1,
        sweep_id: str | None = None,
    ) -> None:
        if parallel < 1:
            raise ConfigError(f"--parallel must be at least 1, got {parallel}")
        self.members = members
        self.grid = grid
        self.base = base  # the config source and --set items every member shares
        self.parallel = parallel
        name = dataclasses.replace(members[0].config, name="sweep-" + "-".join(k for k, _ in grid))
        self.sweep_id = sweep_id or new_run_id(name, Path(runs_dir))
        self.sweep_dir = Path(runs_dir) / self.sweep_id
        self.status: str = Status.CREATED
        self.controllers: dict[str, RunController] = {}
        self._subscribers: list[MemberSubscriber] = []
        self._stop_requested = False
        self._aborted = False
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep", daemon=True)

    @classmethod
    def plan(
        cls,
        source: str | None,
        overrides: list[str],
        grid_items: list[str],
        runs_dir: str | Path,
        parallel: int = 1,
        sweep_id: str | None = None,
        fork: str | None = None,
    ) -> Sweep:
        for item in overrides:
            parse_override(item)
        grid = parse_grid(grid_items)
        members = plan_members(source, overrides, grid, fork)
        base = {"config": source, "overrides": overrides, "from": fork}
        return cls(members, runs_dir, grid=grid, base=base, parallel=parallel, sweep_id=sweep_id)

    def subscribe(self, subscriber: MemberSubscriber) -> None:
        self._subscribers.append(subscriber)

    def check_inputs(self, progress: Callable[[str], None] = lambda message: None) -> None:
        """Every member's config against this machine, before anything starts."""
        for member in self.members:
            controller = self._controller(member)
            try:
                controller.check_inputs(progress)
            except ConfigError as err:
                raise ConfigError(f"sweep member {member.name}: {err}") from None

    def start(self) -> Sweep:
        self.sweep_dir.mkdir(parents=True, exist_ok=False)
        self.status = Status.RUNNING
        self._write_record()
        self._thread.start()
        return self

    def request_stop(self, source: str = "user") -> None:
        """The members running now end after their round; no other starts."""
        with self._lock:
            self._stop_requested = True
            running = [c for c in self.controllers.values() if not c.finished]
        if self.status == Status.RUNNING:
            self.status = Status.STOPPING
        for controller in running:
            controller.request_stop(source)

    def abort(self) -> None:
        with self._lock:
            self._stop_requested = self._aborted = True
            running = [c for c in self.controllers.values() if not c.finished]
        for controller in running:
            controller.abort()

    def wait(self, timeout: float | None = None) -> str | None:
        self._finished.wait(timeout)
        return self.status if self._finished.is_set() else None

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    # -- the sweep's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        pending = list(self.members)
        running: list[tuple[Member, RunController]] = []
        while pending or running:
            with self._lock:
                while pending and len(running) < self.parallel and not self._stop_requested:
                    member = pending.pop(0)
                    started = self._start_member(member)
                    if started is not None:
                        running.append((member, started))
            if not running:
                if self._stop_requested:
                    break
                continue
            member, controller = running[0]
            for candidate in running:
                if candidate[1].finished:
                    member, controller = candidate
                    break
            if controller.wait(timeout=0.5) is None:
                continue
            member.status = controller.status
            running.remove((member, controller))
            self._write_record()
        self.status = self._outcome()
        self._write_record()
        self._finished.set()

    def _start_member(self, member: Member) -> RunController | None:
        """The member's run, started; None (and the member failed) when it cannot start."""
        controller = self._controller(member)
        controller.subscribe(functools.partial(self._deliver, member.name))
        member.status = Status.RUNNING
        self._write_record()
        try:
            controller.start()
        except Exception as err:  # the sweep goes on with the other members
            member.status = Status.FAILED
            self._write_record()
            self._deliver(member.name, ev.make(ev.ERROR, source="sweep", message=str(err)))
            return None
        return controller

    def _controller(self, member: Member) -> RunController:
        controller = self.controllers.get(member.name)
        if controller is None:
            controller = RunController(
                member.config, self.sweep_dir, run_id=member.name, fork=member.fork
            )
            self.controllers[member.name] = controller
        return controller

    def _deliver(self, member: str, event: ev.Event) -> None:
        for subscriber in self._subscribers:
            subscriber(member, event)

    def _outcome(self) -> str:
        statuses = [member.status for member in self.members]
        if self._aborted:
            return Status.ABORTED
        if self._stop_requested or Status.PENDING in statuses:
            return Status.STOPPED
        return Status.FAILED if Status.FAILED in statuses else Status.COMPLETED

    def _write_record(self) -> None:
        record = SweepRecord(
            self.sweep_id,
            [[key, values] for key, values in self.grid],
            self.base,
            [{"name": m.name, "overrides": m.overrides, "status": m.status} for m in self.members],
            self.status,
        )
        tmp = self.sweep_dir / f".{SWEEP_FILE}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.sweep_dir / SWEEP_FILE)


@dataclass
class SweepRecord:
    sweep_id: str
    grid: list[list[Any]]
    base: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)
    status: str = Status.RUNNING

    def member_folders(self, sweep_dir: Path) -> list[Path]:
        """The members' run folders that hold a record, in the sweep's order."""
        folders = [sweep_dir / member["name"] for member in self.members]
        return [folder for folder in folders if (folder / EVENTS_FILE).is_file()]


def is_sweep(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file()


def read_sweep(path: str | Path) -> SweepRecord:
    """A sweep folder's record; RunFolderError when it is missing, damaged or not what fedtui
    writes (it may come from anyone: a member's name is one folder inside the sweep's)."""
    file = Path(path) / SWEEP_FILE
    try:
        with open(file, "rb") as handle:
            text = handle.read(MAX_SWEEP_BYTES + 1)
        if len(text) > MAX_SWEEP_BYTES:
            raise ValueError(f"larger than {MAX_SWEEP_BYTES >> 20} MiB")
        record = SweepRecord(**json.loads(text))
        if not (isinstance(record.sweep_id, str) and isinstance(record.status, str)) or not all(
            isinstance(values, list) and all(isinstance(v, str) for v in [key, *values])
            for key, values in record.grid
        ):
            raise ValueError("not a sweep record")
        if not isinstance(record.base, dict) or not all(map(_member_name, record.members)):
            raise ValueError("not a sweep record")
        return record
    except FileNotFoundError:
        raise RunFolderError(f"not a sweep folder (no {SWEEP_FILE}): {path}") from None
    except (OSError, ValueError, TypeError, RecursionError) as err:
        raise RunFolderError(f"{file} cannot be read: {err}") from None


MAX_SWEEP_BYTES = 1 << 20  # fedtui's are a few kB


def _member_name(member: Any) -> bool:
    name = member.get("name") if isinstance(member, dict) else None
    return isinstance(name, str) and name not in ("", ".", "..") and not {"/", "\0"} & set(name)


SWEEP_EXPORT_COLUMNS = (
    "member",
    "status",
    "rounds",
    "best_round",
    "best_eval_loss",
    "final_eval_loss",
    "seconds",
    "bytes_sent",
    "bytes_received",
)


def export_sweep(record: SweepRecord, members: list[tuple[str, RunState]], fmt: str) -> str:
    """One row per member run: how it ended, its best and final eval loss, time and bytes."""
    rows = [_member_row(name, state) for name, state in members]
    if fmt == "json":
        document = {"sweep_id": record.sweep_id, "status": record.status, "grid": record.grid}
        return json.dumps({**document, "members": rows}, indent=2) + "\n"
    return csv_text(rows, SWEEP_EXPORT_COLUMNS)


def _member_row(name: str, state: RunState) -> dict[str, Any]:
    done = [state.rounds[n] for n in sorted(state.rounds) if state.rounds[n].done]
    final = done[-1].eval_loss if done else None
    return {
        "member": name,
        "status": state.status,
        "rounds": state.rounds_completed,
        "best_round": state.best_round,
        "best_eval_loss": state.best_eval_loss,
        "final_eval_loss": final,
        "seconds": state.elapsed,
        "bytes_sent": sum(r.bytes_sent or 0 for r in done),
        "bytes_received": sum(r.bytes_received or 0 for r in done),
    }
