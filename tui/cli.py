"""The `fedtui` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.config import RunConfig, describe_strategy, load_config, presets as preset_files
from engine.controller import RunController
from engine.errors import FedtuiError
from engine.runs import (
    export as export_metrics,
    find_run,
    list_runs,
    read_run,
    sample_runs_folder,
)
from tui import format as fmt
from tui.headless import EXIT_CODES, run_headless

DEFAULT_RUNS_DIR = "runs"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"fedtui: error: {message} (fedtui --help for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fedtui",
        description="Launch, watch and steer federated fine-tuning of language "
        "models (FedProx on Flower), and look back at saved runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="start a run and watch it")
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="a TOML file or a preset name (default: the offline default)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (dotted keys reach tables); repeatable",
    )
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run folders go")
    run.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped run from its last global model (--set rounds=N to go further)",
    )
    run.add_argument(
        "--headless",
        action="store_true",
        help="no TUI: plain progress lines (Ctrl+C: stop after this round; twice: abort)",
    )
    run.set_defaults(handler=_run)

    runs = commands.add_parser("runs", help="list runs with status, rounds, best eval loss")
    runs.add_argument(
        "folder",
        nargs="?",
        metavar="DIR",
        help=f"a folder of runs (default: the sample runs, and ./{DEFAULT_RUNS_DIR})",
    )
    runs.set_defaults(handler=_runs)

    export = commands.add_parser("export", help="per-round metrics of a run")
    export.add_argument("run", metavar="RUN", help="a run folder, or a sample run's name")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(handler=_export)

    export_model = commands.add_parser(
        "export-model", help="write a run's best global model as a save_pretrained folder"
    )
    export_model.add_argument("run", metavar="RUN", help="a run folder")
    export_model.add_argument("out", metavar="OUT", help="a new (or empty) folder to write")
    export_model.set_defaults(handler=_export_model)

    replay = commands.add_parser("replay", help="replay saved runs (several: overlaid)")
    replay.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders, or sample runs' names (fedtui runs lists them)",
    )
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
    except KeyboardInterrupt:  # Ctrl+C before a run started (a run handles its own)
        print("fedtui: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the machine's, not the input's: a full disk, a lost folder
        print(f"fedtui: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.config:
            raise FedtuiError("--resume takes its config from the run folder; drop CONFIG")
        controller = RunController.resume(args.resume, args.overrides)
        _check_inputs(controller)
    else:
        config = load_config(args.config, args.overrides)
        runs_dir = Path(args.runs_dir)
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir)
        _check_inputs(controller)
    if args.headless:
        return run_headless(controller)
    from tui.app import live_app  # heavy: Textual loads only for a TUI, not for --headless

    live_app(controller).run()
    return _report(controller)


def _launcher(args: argparse.Namespace) -> int:
    from tui.app import launcher_app  # heavy: Textual loads only for a TUI

    runs_dir = Path(DEFAULT_RUNS_DIR)
    started: list[RunController] = []

    def start_run(config: RunConfig) -> RunController:  # the screen calls it off its UI thread
        _check_runs_dir(runs_dir)
        controller = RunController(config, runs_dir)
        controller.check_inputs()  # silent: the TUI owns the terminal
        started.append(controller)
        return controller

    launcher_app([sample_runs_folder(), runs_dir], start_run=start_run).run()
    return _report(started[-1]) if started else 0


def _check_inputs(controller: RunController) -> None:
    """Bad input fails here, before a run folder or a process exists."""
    with _StatusLine() as progress:
        controller.check_inputs(progress)


def _check_runs_dir(runs_dir: Path) -> None:
    if runs_dir.exists() and not runs_dir.is_dir():
        raise FedtuiError(f"--runs-dir is not a folder: {runs_dir}")
    existing = next(p for p in (runs_dir, *runs_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FedtuiError(f"--runs-dir {runs_dir} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FedtuiError(f"--runs-dir {runs_dir} cannot be written: {existing} is read-only")


class _StatusLine:
    """What a slow check is doing, on a terminal's stderr, erased once it is done; nothing
    elsewhere, so a script reads only the outcome."""

    def __init__(self) -> None:
        self.shown = False

    def __enter__(self) -> _StatusLine:
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


def _warn(message: str | None) -> None:
    if message:
        print(f"fedtui: warning: {message}", file=sys.stderr)


def _report(controller) -> int:
    """After the TUI closes: where the run is and how it ended."""
    controller.wait()
    if controller.input_error is not None:
        print(f"fedtui: error: {controller.input_error}", file=sys.stderr)
        return 2
    print(f"run {controller.status}: {controller.run_dir}")
    return EXIT_CODES.get(controller.status, 1)


def _replay(args: argparse.Namespace) -> int:
    from tui.app import replay_app  # heavy: Textual loads only for a TUI

    folders = [find_run(run) for run in args.runs]
    runs = [read_run(folder) for folder in folders]
    for run in runs:
        _warn(run.warning)
    replay_app([(run.path.resolve().name, run.events) for run in runs], folder=folders[0]).run()
    return 0


def _runs(args: argparse.Namespace) -> int:
    if args.folder is not None:
        _print_runs(list_runs(args.folder), args.folder)
        return 0
    print("sample runs (fedtui replay NAME):")
    _print_runs(list_runs(sample_runs_folder()), "the sample runs")
    if Path(DEFAULT_RUNS_DIR).is_dir():
        print(f"\nruns in ./{DEFAULT_RUNS_DIR}:")
        _print_runs(list_runs(DEFAULT_RUNS_DIR), DEFAULT_RUNS_DIR)
    return 0


def _print_runs(listings, folder) -> None:
    if not listings:
        print(f"no runs in {folder}")
        return
    for listing in listings:
        _warn(listing.warning)
    print(
        f"{'RUN':<40} {'STATUS':<10} {'ROUNDS':>7} {'BEST EVAL':>10} {'@':>3} "
        f"{'FINAL EVAL':>10} {'WALL':>8} {'EXCHANGED':>10}  STRATEGY"
    )
    for listing in listings:
        state = listing.state
        if state is None:
            print(f"{listing.path.name:<40} {'unreadable':<10} {listing.problem}")
            continue
        summary = fmt.run_summary(state)
        print(
            f"{listing.path.name:<40} {listing.status:<10} {summary['rounds']:>7} "
            f"{summary['best_eval']:>10} {summary['best_round']:>3} "
            f"{summary['final_eval']:>10} {summary['wall']:>8} {summary['exchanged']:>10}  "
            f"{describe_strategy(state.config)}"
        )


def _export(args: argparse.Namespace) -> int:
    run = read_run(find_run(args.run))
    _warn(run.warning)
    sys.stdout.write(export_metrics(run.state, args.format))
    return 0


def _export_model(args: argparse.Namespace) -> int:
    from engine.export import export_model  # heavy: torch, transformers and peft

    out = export_model(find_run(args.run), args.out)
    print(
        f"best model (LoRA merged, if any) with its tokenizer: {out} "
        f"(AutoModelForCausalLM.from_pretrained loads it)"
    )
    return 0


def _presets(args: argparse.Namespace) -> int:
    for name, path in sorted(preset_files().items()):
        print(f"{name:<32} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
