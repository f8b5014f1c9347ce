"""The commands that reach a live run through its control socket, from any shell: `fedtui stop`,
`fedtui set` (a change from the next round), `fedtui hold` and `fedtui continue`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.core import commands
from engine.core.describe import setting
from engine.core.errors import FedtuiError
from engine.core.live_config import parse_changes
from engine.core.status import exit_code
from engine.net import control_socket as control
from engine.record.run_folders import EVENTS_FILE, find_run
from engine.run.followed_run import FollowedRun


def stop_command(args: argparse.Namespace) -> int:
    run_dir = run_folder(args.run)
    control.send(run_dir, commands.make(commands.ABORT if args.abort else commands.STOP))
    if not args.wait:
        what = "aborting" if args.abort else "stopping after the current round"
        print(f"run {run_dir.name}: {what}")
        return 0
    run = FollowedRun(run_dir).start()
    status = run.wait()
    print(f"run {status}: {run_dir}")
    return exit_code(status)


def set_command(args: argparse.Namespace) -> int:
    run_dir = run_folder(args.run)
    changes = parse_changes(args.changes)
    answer = FollowedRun(run_dir).change_config(changes, source="fedtui set")
    for event in answer["changes"]:
        print(
            f"run {run_dir.name}: {event['key']} {setting(event['old'])} -> "
            f"{setting(event['new'])} from round {event['round']}"
        )
    if answer["unanswered"]:
        print(
            f"run {run_dir.name}: sent {', '.join(answer['unanswered'])}; the run has not said yet "
            f"from which round (it is evaluating or saving): its events will"
        )
    elif not answer["changes"]:
        print(f"run {run_dir.name}: nothing changes (every value is already so)")
    return 0


def hold_command(args: argparse.Namespace) -> int:
    run_dir = run_folder(args.run)
    control.send(run_dir, commands.make(commands.HOLD, source="fedtui hold"))
    print(
        f"run {run_dir.name}: holds after its current round "
        f"(fedtui continue {run_dir} goes on; nothing is lost while it waits)"
    )
    return 0


def continue_command(args: argparse.Namespace) -> int:
    run_dir = run_folder(args.run)
    control.send(run_dir, commands.make(commands.CONTINUE, source="fedtui continue"))
    print(f"run {run_dir.name}: goes on with its next round")
    return 0


def run_folder(name: str) -> Path:
    """The folder of a run named on the command line (a path, or a sample run's name)."""
    run_dir = find_run(name)
    if not (run_dir / EVENTS_FILE).is_file():
        raise FedtuiError(f"not a run folder: {run_dir}")
    return run_dir
