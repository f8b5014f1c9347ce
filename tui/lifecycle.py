"""The commands that start, watch and end runs: `fedtui run`, `serve`, `attach`, `stop`, and the
launcher (`fedtui` alone). Every run watched in the TUI has its controller in a process of its
own (tui.detached), so that the TUI can detach from it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.errors import FedtuiError
from engine.core.status import LIVE, exit_code
from engine.net.federation import ServeSettings, parse_address
from engine.record import run_lock
from engine.record.run_folders import list_runs, read_run, sample_runs_folder
from engine.run.controller import RunController
from engine.run.followed_run import FollowedRun
from engine.run.fork import fork_point
from engine.run.sweep import Sweep
from tui import detached
from tui.headless import follow_headless, run_headless, sweep_headless
from tui.live_commands import run_folder

DEFAULT_RUNS_DIR = "runs"


def run_command(args: argparse.Namespace) -> int:
    if args.resume:
        if args.fork:
            raise FedtuiError("--resume goes on with a run, --from starts a new one: choose one")
        if args.config:
            raise FedtuiError("--resume takes its config from the run folder; drop CONFIG")
        controller = RunController.resume(args.resume, args.overrides)
    elif args.fork:
        config, origin = fork_point(args.fork, args.config, args.overrides)
        runs_dir = Path(args.runs_dir)
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir, fork=origin)
    else:
        config = load_config(args.config, args.overrides)
        runs_dir = Path(args.runs_dir)
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir)
    _check_inputs(controller)
    if args.headless and not args.detach:
        return run_headless(controller)
    run = detached.launch(
        controller, args.overrides, resume=bool(args.resume), leashed=not args.detach
    )
    if args.detach:
        _print_way_back(run, "started in the background")
        return 0
    return _watch(run)


def serve_command(args: argparse.Namespace) -> int:
    """A run whose clients join from other hosts (`fedtui join`), watched like `fedtui run`."""
    if args.join_timeout <= 0:
        raise FedtuiError(f"--join-timeout must be > 0 seconds, got {args.join_timeout:g}")
    serve = ServeSettings(
        parse_address(args.address, "--address"),
        Path(args.federation),
        insecure=args.insecure,
        join_timeout_s=args.join_timeout,
    )
    if args.resume:
        if args.config:
            raise FedtuiError("--resume takes its config from the run folder; drop CONFIG")
        controller = RunController.resume(args.resume, args.overrides, serve=serve)
    else:
        config = load_config(args.config, args.overrides)
        if config.backend != "deployment":
            raise FedtuiError('fedtui serve needs backend = "deployment" (clients on other hosts)')
        runs_dir = Path(args.runs_dir)
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir, serve=serve)
    _check_inputs(controller)
    if args.headless:
        return run_headless(controller)
    run = detached.launch(controller, args.overrides, resume=bool(args.resume), leashed=True)
    return _watch(run)


def sweep_command(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir)
    _check_runs_dir(runs_dir)
    sweep = Sweep.plan(
        args.config, args.overrides, args.grid, runs_dir, parallel=args.parallel, fork=args.fork
    )
    with _CheckProgress() as progress:
        sweep.check_inputs(progress)
    if args.headless:
        return sweep_headless(sweep)
    from tui.app import sweep_app  # heavy: Textual loads only for a TUI

    sweep_app(sweep).run()
    if not sweep.finished:  # the TUI closed: its members end with it
        sweep.abort()
        sweep.wait()
    print(f"sweep {sweep.status}: {sweep.sweep_dir}")
    return exit_code(sweep.status)


def _watch(run: FollowedRun) -> int:
    """The live monitor on a run whose controller is another process; when the terminal goes
    (a closed window, a dropped SSH session), the run is detached rather than lost."""
    from tui.app import live_app  # heavy: Textual loads only for a TUI, not for --headless

    def on_hangup(signum, frame) -> None:
        run.detach()
        os._exit(129)  # nothing is left to draw on

    signal.signal(signal.SIGHUP, on_hangup)
    live_app(run).run()
    return _report(run)


def attach_command(args: argparse.Namespace) -> int:
    run_dir = run_folder(args.run) if args.run else _latest_running(Path(DEFAULT_RUNS_DIR))
    if run_lock.live_controller(run_dir) is None:
        status = run_lock.status(run_dir, read_run(run_dir).state.status)
        raise FedtuiError(
            f"run {run_dir.name} is not running ({status}); fedtui replay {run_dir} shows it"
        )
    run = FollowedRun(run_dir)
    if args.headless:
        return follow_headless(run)
    return _watch(run)


def _latest_running(runs_dir: Path) -> Path:
    running = [
        listing.path
        for listing in (list_runs(runs_dir) if runs_dir.is_dir() else [])
        if listing.status in LIVE
    ]
    if not running:
        raise FedtuiError(f"no running run in {runs_dir}; fedtui runs lists them all")
    return running[-1]


def _print_way_back(run: FollowedRun, where: str) -> None:
    """Where a run that goes on without this process is, and the commands that reach it."""
    print(f"run {run.run_id} {where}: {run.run_dir}")
    print(f"  watch it: fedtui attach {_shown(run.run_dir)}")
    print(f"  stop it:  fedtui stop {_shown(run.run_dir)}")


def _shown(path: Path) -> str:
    """`path` relative to the current directory where it is inside it: what a user types."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def launcher_command(args: argparse.Namespace) -> int:
    from tui.app import launcher_app  # heavy: Textual loads only for a TUI

    runs_dir = Path(DEFAULT_RUNS_DIR)
    started: list[FollowedRun] = []

    def start_run(config: RunConfig) -> FollowedRun:  # the screen calls it off its UI thread
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir)
        controller.check_inputs()  # silent: the TUI owns the terminal
        started.append(detached.launch(controller, [], resume=False, leashed=True))
        return started[-1]

    launcher_app([sample_runs_folder(), runs_dir], start_run=start_run).run()
    return _report(started[-1]) if started else 0


def _check_inputs(controller: RunController) -> None:
    """Bad input fails here, before a run folder or a process exists."""
    with _CheckProgress() as progress:
        controller.check_inputs(progress)


def _check_runs_dir(runs_dir: Path) -> None:
    if runs_dir.exists() and not runs_dir.is_dir():
        raise FedtuiError(f"--runs-dir is not a folder: {runs_dir}")
    existing = next(p for p in (runs_dir, *runs_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FedtuiError(f"--runs-dir {runs_dir} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FedtuiError(f"--runs-dir {runs_dir} cannot be written: {existing} is read-only")


class _CheckProgress:
    """What a slow check is doing, on a terminal's stderr, erased once it is done; nothing
    elsewhere, so a script reads only the outcome."""

    def __init__(self) -> None:
        self.shown = False

    def __enter__(self) -> _CheckProgress:
        return self

    def __call__(self, message: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\x1b[Kfedtui: {message}...")
            sys.stderr.flush()
            self.shown = True

    def __exit__(self, *exc_info) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _report(run: FollowedRun) -> int:
    """After the TUI closes: where the run is and how it ended, or how to find it again."""
    if run.detached and not run.finished:
        _print_way_back(run, "goes on in the background")
        return 0
    run.wait()
    print(f"run {run.status}: {run.run_dir}")
    return exit_code(run.status)
