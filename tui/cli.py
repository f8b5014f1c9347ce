"""The `fedtui` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import FedtuiError

DEFAULT_RUNS_DIR = "runs"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"fedtui: error: {message} (fedtui --help for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fedtui", description="Launch, watch and steer federated fine-tuning of language "
                                   "models (FedProx on Flower), and look back at saved runs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="start a run and watch it")
    run.add_argument("config", nargs="?", metavar="CONFIG",
                     help="a TOML file or a preset name (default: the offline default)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key (dotted keys reach tables); repeatable")
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run folders go")
    run.add_argument("--resume", metavar="RUN",
                     help="continue a stopped run from its last global model (--set rounds=N "
                          "to go further)")
    run.add_argument("--headless", action="store_true",
                     help="no TUI: plain progress lines (Ctrl+C: stop after this round; "
                          "twice: abort)")
    run.set_defaults(handler=_run)

    runs = commands.add_parser("runs", help="list runs with status, rounds, best eval loss")
    runs.add_argument("folder", nargs="?", default=DEFAULT_RUNS_DIR, metavar="DIR")
    runs.set_defaults(handler=_runs)

    export = commands.add_parser("export", help="per-round metrics of a run")
    export.add_argument("run", metavar="RUN", help="a run folder")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(handler=_export)

    replay = commands.add_parser("replay", help="replay saved runs (several: overlaid)")
    replay.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    replay.set_defaults(handler=_replay)

    presets = commands.add_parser("presets", help="list the built-in config presets")
    presets.set_defaults(handler=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.handler = _launcher
    try:
        return args.handler(args)
    except FedtuiError as err:
        print(f"fedtui: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.controller import RunController
    from tui.headless import run_headless

    if args.resume:
        if args.config:
            raise FedtuiError("--resume takes its config from the run folder; drop CONFIG")
        controller = RunController.resume(args.resume, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
        runs_dir = Path(args.runs_dir)
        if runs_dir.exists() and not runs_dir.is_dir():
            raise FedtuiError(f"--runs-dir is not a folder: {runs_dir}")
        controller = RunController(config, runs_dir)
    if args.headless:
        return run_headless(controller)
    from tui.app import live_app

    live_app(controller).run()
    return _report(controller)


def _launcher(args: argparse.Namespace) -> int:
    from tui.app import launcher_app

    from engine.controller import RunController

    runs_dir = Path(DEFAULT_RUNS_DIR)
    started: list[RunController] = []

    def start_run(config):
        started.append(RunController(config, runs_dir))
        return started[-1]

    launcher_app([Path("sample_runs"), runs_dir], start_run=start_run).run()
    return _report(started[-1]) if started else 0


def _report(controller) -> int:
    """After the TUI closes: where the run is and how it ended."""
    from tui.headless import EXIT_CODES

    controller.wait()
    if controller.input_error is not None:
        print(f"fedtui: error: {controller.input_error}", file=sys.stderr)
        return 2
    print(f"run {controller.status}: {controller.run_dir}")
    return EXIT_CODES.get(controller.status, 1)


def _replay(args: argparse.Namespace) -> int:
    from engine.runs import read_run_events
    from tui.app import replay_app

    recorded = [(Path(run).resolve().name, read_run_events(run)) for run in args.runs]
    replay_app(recorded, folder=Path(args.runs[0])).run()
    return 0


def _runs(args: argparse.Namespace) -> int:
    from engine.config import describe_strategy
    from engine.runs import list_runs
    from tui import format as fmt

    listings = list_runs(args.folder)
    if not listings:
        print(f"no runs in {args.folder}")
        return 0
    print(f"{'RUN':<40} {'STATUS':<10} {'ROUNDS':>7} {'BEST EVAL':>10} {'@':>3} "
          f"{'FINAL EVAL':>10} {'WALL':>8} {'EXCHANGED':>10}  STRATEGY")
    for listing in listings:
        state = listing.state
        if state is None:
            print(f"{listing.path.name:<40} {'unreadable':<10} {listing.problem}")
            continue
        summary = fmt.run_summary(state)
        print(f"{listing.path.name:<40} {state.status:<10} {summary['rounds']:>7} "
              f"{summary['best_eval']:>10} {summary['best_round']:>3} "
              f"{summary['final_eval']:>10} {summary['wall']:>8} {summary['exchanged']:>10}  "
              f"{describe_strategy(state.config)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from engine.runs import export, open_run

    sys.stdout.write(export(open_run(args.run), args.format))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from engine.config import presets

    for name, path in sorted(presets().items()):
        print(f"{name:<32} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
