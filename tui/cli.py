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

    presets = commands.add_parser("presets", help="list the built-in config presets")
    presets.set_defaults(handler=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:  # until the launcher screen exists: the default run
        args = build_parser().parse_args(["run", "--headless"])
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

    config = load_config(args.config, args.overrides)
    runs_dir = Path(args.runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise FedtuiError(f"--runs-dir is not a folder: {runs_dir}")
    return run_headless(RunController(config, runs_dir))


def _runs(args: argparse.Namespace) -> int:
    from engine.runs import list_runs

    listings = list_runs(args.folder)
    if not listings:
        print(f"no runs in {args.folder}")
        return 0
    print(f"{'RUN':<40} {'STATUS':<10} {'ROUNDS':>7} {'BEST EVAL':>10} {'@':>3}  STRATEGY")
    for listing in listings:
        state = listing.state
        if state is None:
            print(f"{listing.path.name:<40} {'unreadable':<10} {listing.problem}")
            continue
        best = f"{state.best_eval_loss:.4f}" if state.best_eval_loss is not None else "-"
        best_round = state.best_round if state.best_round is not None else "-"
        rounds = f"{state.rounds_completed}/{state.total_rounds or '?'}"
        strategy = _describe(state.config)
        print(f"{listing.path.name:<40} {state.status:<10} {rounds:>7} {best:>10} "
              f"{best_round:>3}  {strategy}")
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


def _describe(config: dict) -> str:
    from engine.config import config_from_dict

    try:
        return config_from_dict(config).describe_strategy()
    except FedtuiError:
        return config.get("strategy", "?")


if __name__ == "__main__":
    sys.exit(main())
