"""The commands that read what is recorded: `fedtui replay`, `runs`, `export`, `export-model`,
`presets` and `config`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.core import config_reference
from engine.core.config_files import presets as preset_files
from engine.core.errors import FedtuiError
from engine.core.strategies import describe_strategy
from engine.core.text import printable
from engine.record.run_folders import (
    export as export_metrics,
    family,
    find_run,
    in_families,
    list_runs,
    read_run,
    sample_runs_folder,
)
from engine.record.trackers import mirror as trackers
from engine.run.sweep import export_sweep, is_sweep, read_sweep
from tui import format as fmt
from tui.lifecycle import DEFAULT_RUNS_DIR

TENSORBOARD_FILES = "events.out.tfevents.*"  # what TensorBoard's writers name their files


def _warn(message: str | None) -> None:
    if message:
        _show(f"fedtui: warning: {message}", file=sys.stderr)


def _show(line: str, file=None) -> None:
    """A line of a listing: folder names and reasons come from run folders, which may come from
    anyone, so nothing in them reaches the terminal as a control sequence."""
    print(printable(line), file=file)


def replay_command(args: argparse.Namespace) -> int:
    from tui.app import replay_app  # heavy: Textual loads only for a TUI

    folders = list(dict.fromkeys(member for run in args.runs for member in _runs_of(find_run(run))))
    runs = [read_run(folder) for folder in folders]
    for run in runs:
        _warn(run.warning)
    replay_app([(run.path.resolve().name, run.events) for run in runs], folder=folders[0]).run()
    return 0


def _runs_of(folder: Path) -> list[Path]:
    """A sweep folder's member runs, or a run folder with its forks beside it: a family."""
    return read_sweep(folder).member_folders(folder) if is_sweep(folder) else family(folder)


def runs_command(args: argparse.Namespace) -> int:
    if args.folder is not None:
        folder = Path(args.folder)
        if is_sweep(folder):
            _print_sweep(folder)
            return 0
        _print_folder(folder)
        return 0
    print("sample runs (fedtui replay NAME):")
    _print_folder(sample_runs_folder())
    if Path(DEFAULT_RUNS_DIR).is_dir():
        print(f"\nruns in ./{DEFAULT_RUNS_DIR}:")
        _print_folder(Path(DEFAULT_RUNS_DIR))
    return 0


def _print_folder(folder: Path) -> None:
    """The runs in `folder`, then its sweeps with their members."""
    listings = list_runs(folder)
    sweeps = sorted(path for path in folder.iterdir() if is_sweep(path))
    if listings or not sweeps:
        _print_runs(listings, folder)
    for sweep in sweeps:
        _print_sweep(sweep)


def _print_sweep(folder: Path) -> None:
    record = read_sweep(folder)
    grid = " ".join(f"{key}={','.join(values)}" for key, values in record.grid)
    print()
    _show(f"sweep {folder.name} ({record.status}, {len(record.members)} members, {grid}):")
    _print_runs(list_runs(folder), folder)


def _print_runs(listings, folder) -> None:
    if not listings:
        _show(f"no runs in {folder}")
        return
    for listing in listings:
        _warn(listing.warning)
    print(f"{fmt.run_table_header(40)}  STRATEGY")
    for listing, depth in in_families(listings):
        state = listing.state
        name = fmt.family_name(listing.path.name, depth)
        if state is None:
            _show(f"{name:<40} {'unreadable':<10} {listing.problem}")
            continue
        row = fmt.run_table_row(name, listing.status, state, 40)
        forked = fmt.forked_text(state)
        _show(f"{row}  {describe_strategy(state.config)}{forked}")


def export_command(args: argparse.Namespace) -> int:
    if args.to is not None:
        return _export_to_tracker(args)
    if args.out is not None:
        raise FedtuiError("--out is where --to tensorboard writes; without --to, export prints")
    folder, fmt = find_run(args.run), args.format or "csv"
    if is_sweep(folder):
        members = [read_run(member) for member in _runs_of(folder)]
        for member in members:
            _warn(member.warning)
        rows = [(member.path.name, member.state) for member in members]
        sys.stdout.write(export_sweep(read_sweep(folder), rows, fmt))
        return 0
    run = read_run(folder)
    _warn(run.warning)
    sys.stdout.write(export_metrics(run.state, fmt))
    return 0


def _export_to_tracker(args: argparse.Namespace) -> int:
    """A recorded run, or each member of a sweep (grouped under it), into a tracker, through the
    mirror a live run with report_to uses. TensorBoard: one folder of event files per run."""
    if args.format is not None:
        raise FedtuiError("--format prints metrics, --to writes them to a tracker: give one")
    if args.out is not None and args.to != "tensorboard":
        raise FedtuiError(f"--out is for --to tensorboard; {args.to} writes to its own store")
    trackers.require([args.to])
    folder = find_run(args.run)
    sweep = folder.resolve().name if is_sweep(folder) else None
    base = Path(args.out) if args.out else Path("tensorboard") / folder.resolve().name
    if sweep is None:
        runs = [(read_run(folder), base)]
    else:
        members = read_sweep(folder).member_folders(folder)
        runs = [(read_run(member), base / member.name) for member in members]
    taken = [out for _, out in runs if any(out.glob(TENSORBOARD_FILES))]
    if args.to == "tensorboard" and taken:
        raise FedtuiError(f"{taken[0]} already holds TensorBoard event files: choose another --out")
    failures: list[str] = []
    for run, out in runs:
        _warn(run.warning)
        tracker = trackers.open_tracker(
            args.to, out, lambda message: _show(f"fedtui: {message}", file=sys.stderr)
        )
        tracked = trackers.TrackedRun(run.path.resolve().name, sweep)
        trackers.mirror_recorded(run.events, tracker, tracked, failures.append)
        if failures:
            _show(f"fedtui: error: {failures[0]}", file=sys.stderr)
            return 1
        _show(f"{tracked.name}: {tracker.location()}")
    return 0


def export_model_command(args: argparse.Namespace) -> int:
    from engine.ml.model_export import export_model  # heavy: torch, transformers and peft

    out = export_model(find_run(args.run), args.out)
    print(
        f"best model (LoRA merged, if any) with its tokenizer: {out} "
        f"(AutoModelForCausalLM.from_pretrained loads it)"
    )
    return 0


def config_command(args: argparse.Namespace) -> int:
    sys.stdout.write(
        config_reference.render_markdown() if args.markdown else config_reference.render_text()
    )
    return 0


def presets_command(args: argparse.Namespace) -> int:
    for name, path in sorted(preset_files().items()):
        print(f"{name:<32} {path}")
    return 0
