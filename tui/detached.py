"""Runs whose controller is a background process: `fedtui run --detach`, and every run the TUI
starts (so that it can detach from it).

`launch` starts `python -P -m tui.detached RUN_DIR ...` in a session of its own, its output in
`logs/controller.out`, and returns once the controller holds the run (or says why it could not);
that process runs the controller as `fedtui run --headless` does, deaf to the terminal's hangup.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.core.config_files import load_config, to_toml
from engine.core.errors import FedtuiError
from engine.net import control_socket as control
from engine.net.federation import ServeSettings
from engine.record import durable, run_lock
from engine.record.run_folders import EVENTS_FILE
from engine.run.controller import RunController
from engine.run.followed_run import FollowedRun
from engine.run.fork import ForkOrigin
from tui.headless import run_headless

OUTPUT_FILE = "controller.out"
START_TIMEOUT_S = 120.0


def launch(
    controller: RunController, overrides: list[str], resume: bool, leashed: bool
) -> FollowedRun:
    """Hand the (checked, not started) `controller`'s run to a background controller process;
    `overrides`: a resumed run's `--set`s (a new run's are in its config.toml already);
    `leashed`: that process aborts the run if this one dies before detaching."""
    run_dir = controller.run_dir.absolute()
    logs = run_dir / "logs"
    if not resume:
        logs.mkdir(parents=True)
        durable.replace_text(run_dir / durable.CONFIG_FILE, to_toml(controller.config))
    # -P: not the working folder first on the path (a `tui/` or `engine/` there is not fedtui's)
    command = [sys.executable, "-P", "-m", "tui.detached", str(run_dir)]
    if resume:
        command += ["--resume", *(f"--set={item}" for item in overrides)]
    command += ["--leash", str(os.getpid())] if leashed else []
    if controller.serve is not None:
        command += ["--serve", json.dumps(controller.serve.to_json())]
    if controller.fork is not None and not resume:
        command += ["--fork", json.dumps(controller.fork.to_json())]
    with open(logs / OUTPUT_FILE, "a", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_running(process, run_dir)
    except FedtuiError:
        if not resume and not (run_dir / EVENTS_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was recorded
        raise
    return FollowedRun(run_dir, leashed=leashed)


def _wait_until_running(process: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (
            run_lock.live_controller(run_dir) == process.pid
            and (run_dir / control.CONTROL_SOCKET).exists()
        ):
            return
        if process.poll() is not None:
            lines = (run_dir / "logs" / OUTPUT_FILE).read_text(errors="replace").splitlines()
            reason = lines[-1] if lines else f"exit code {process.returncode}"
            raise FedtuiError(f"the run's controller did not start: {reason.strip()}")
        time.sleep(0.05)
    process.kill()
    raise FedtuiError(f"the run's controller did not start within {START_TIMEOUT_S:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.detached")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--leash", type=int, help="abort the run when this PID ends")
    parser.add_argument("--serve", type=json.loads, help="fedtui serve's settings (JSON)")
    parser.add_argument("--fork", type=json.loads, help="the run a fork starts from (JSON)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started it may close
    serve = ServeSettings.from_json(args.serve) if args.serve else None
    try:
        if args.resume:
            controller = RunController.resume(
                args.run_dir, args.overrides, leash_pid=args.leash, serve=serve
            )
        else:
            config = load_config(args.run_dir / "config.toml")
            controller = RunController(
                config,
                args.run_dir.parent,
                run_id=args.run_dir.name,
                leash_pid=args.leash,
                serve=serve,
                fork=ForkOrigin.from_json(args.fork) if args.fork else None,
            )
    except FedtuiError as err:
        print(f"fedtui: error: {err}", flush=True)
        return 2
    controller.inputs_already_checked()  # by `launch`, on this machine, moments ago
    signal.signal(signal.SIGTERM, lambda signum, frame: controller.abort())
    try:
        return run_headless(controller)
    except FedtuiError as err:  # another controller took the run since `launch` checked
        print(f"fedtui: error: {err}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
