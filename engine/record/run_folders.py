"""Run folders: find one (by path, or a sample run by name), open one, list a folder of them,
export per-round metrics."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.config_files import get_dotted
from engine.core.errors import RunFolderError
from engine.core.events import Event, scan_events
from engine.core.status import Status
from engine.record import run_lock
from engine.record.run_state import RoundResult, RunState

EVENTS_FILE = "events.jsonl"
SWEEP_FILE = "sweep.json"  # a sweep folder's record (engine.run.sweep)
EXPORT_COLUMNS = (
    "round",
    "eval_loss",
    "train_loss",
    "seconds",
    "eval_seconds",
    "bytes_sent",
    "bytes_received",
    "clients",
    "bytes_sent_per_client",
    "bytes_received_per_client",
)


def sample_runs_folder() -> Path:
    """The recorded runs that ship with fedtui (package data), wherever it is installed."""
    return Path(str(resources.files("sample_runs")))


def is_sample_run(path: Path) -> bool:
    return path.resolve().is_relative_to(sample_runs_folder().resolve())


def find_run(path_or_name: str | Path) -> Path:
    """A run folder: the path itself, or, where no such path exists, the sample run of that name
    (`seed-opt350m-codeparrot-fedprox-mu0.1`)."""
    path = Path(path_or_name)
    sample = sample_runs_folder() / path.name
    recorded = (sample / EVENTS_FILE).is_file() or (sample / SWEEP_FILE).is_file()
    if not path.exists() and path.name == str(path_or_name) and recorded:
        return sample
    return path


def new_run_id(config: RunConfig, runs_dir: Path) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config.name or config.strategy}".replace("/", "-").replace(" ", "-")
    run_id, suffix = base, 1
    while (runs_dir / run_id).exists():
        suffix += 1
        run_id = f"{base}-{suffix}"
    return run_id


@dataclass
class RecordedRun:
    """A run folder's record as read: its events, their fold, and the lines that were damaged
    (each with why), which the readers skip."""

    path: Path
    events: list[Event]
    state: RunState
    damaged: list[tuple[int, str]]

    @property
    def warning(self) -> str | None:
        """One line saying what was skipped, or None when the record is whole."""
        if not self.damaged:
            return None
        lines = ", ".join(str(number) for number, _ in self.damaged[:5])
        more = ", ..." if len(self.damaged) > 5 else ""
        return (
            f"{self.path / EVENTS_FILE}: skipped {len(self.damaged)} damaged "
            f"line{'s' if len(self.damaged) > 1 else ''} ({lines}{more}: {self.damaged[0][1]}); "
            f"read the other {len(self.events)} events"
        )


def read_run(path: str | Path) -> RecordedRun:
    """A run folder's events, past any damage the record has; RunFolderError when `path` is not
    a run folder or no event in it can be read."""
    folder = Path(path)
    if not folder.is_dir():
        raise RunFolderError(f"not a run folder: {path}")
    events_file = folder / EVENTS_FILE
    if not events_file.is_file():
        raise RunFolderError(f"not a run folder (no {EVENTS_FILE}): {path}")
    scan = scan_events(events_file)
    state, events, damaged = RunState(), [], list(scan.damaged)
    for number, event in zip(scan.line_numbers, scan.events):
        try:
            state.apply(event)
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            # well-formed, but with values no view can show (a hand edit, another tool)
            damaged.append((number, f"a {event['type']} event views cannot use ({err!r})"))
            continue
        events.append(event)
    if not events:
        if damaged:
            number, why = min(damaged)
            raise RunFolderError(f"{events_file} holds no readable event (line {number}: {why})")
        raise RunFolderError(f"run folder has no events yet: {path}")
    return RecordedRun(folder, events, state, sorted(damaged))


def read_parent(state: RunState) -> RunState | None:
    """A fork's parent's record, where its folder still is; None otherwise."""
    if not state.forked_from:
        return None
    try:
        return read_run(state.forked_from["path"]).state
    except RunFolderError:
        return None


def read_run_events(path: str | Path) -> list[Event]:
    return read_run(path).events


def open_run(path: str | Path) -> RunState:
    return read_run(path).state


@dataclass
class RunListing:
    path: Path
    state: RunState | None
    problem: str | None = None  # why the run could not be read (state is None)
    warning: str | None = None  # what of a readable run's record was damaged and skipped

    @property
    def status(self) -> str:
        if self.state is None:
            return Status.UNREADABLE
        return run_lock.status(self.path, self.state.status)


def list_runs(folder: str | Path) -> list[RunListing]:
    """Every run folder directly under `folder`, oldest first; unreadable ones say why."""
    root = Path(folder)
    if not root.is_dir():
        raise RunFolderError(f"not a folder: {folder}")
    try:
        paths = sorted(p for p in root.iterdir() if (p / EVENTS_FILE).is_file())
    except OSError as err:
        raise RunFolderError(f"cannot read {folder}: {err.strerror}") from None
    listings = []
    for path in paths:
        try:
            recorded = read_run(path)
        except RunFolderError as err:
            listings.append(RunListing(path, None, str(err)))
        else:
            listings.append(RunListing(path, recorded.state, warning=recorded.warning))
    return listings


def in_families(listings: list[RunListing]) -> list[tuple[RunListing, int]]:
    """The listings with each fork right after its parent, with its depth (a fork 1, a fork of
    a fork 2); a run whose parent is not among them stands on its own."""
    here = {listing.path.resolve() for listing in listings}
    forks: dict[Path, list[RunListing]] = {}
    roots = []
    for listing in listings:
        parent = _parent_path(listing)
        if parent is not None and parent in here:
            forks.setdefault(parent, []).append(listing)
        else:
            roots.append(listing)
    ordered: list[tuple[RunListing, int]] = []

    def add(listing: RunListing, depth: int) -> None:
        ordered.append((listing, depth))
        for fork in forks.get(listing.path.resolve(), []):
            add(fork, depth + 1)

    for root in roots:
        add(root, 0)
    return ordered


def family(run_dir: Path) -> list[Path]:
    """A run and, after it, its forks (and theirs) in the same folder: what replay overlays."""
    listings = list_runs(run_dir.parent) if run_dir.parent.is_dir() else []
    ordered = in_families(listings)
    target = run_dir.resolve()
    start = next((i for i, (run, _) in enumerate(ordered) if run.path.resolve() == target), None)
    if start is None:
        return [run_dir]
    depth = ordered[start][1]
    members = [ordered[start][0].path]
    for listing, deeper in ordered[start + 1 :]:
        if deeper <= depth:
            break
        members.append(listing.path)
    return members


def _parent_path(listing: RunListing) -> Path | None:
    forked_from = listing.state.forked_from if listing.state is not None else None
    return Path(forked_from["path"]).resolve() if forked_from else None


def export_rows(state: RunState) -> list[dict]:
    """One row per round; a key changed while the run was live is a column too, each round with
    the value it ran with."""
    rows = []
    changed = extra_columns(state)
    for number in sorted(state.rounds):
        result = state.rounds[number]
        replies = None if state.imported_from else len(result.client_train_loss)
        rows.append(
            {
                "round": number,
                "eval_loss": result.eval_loss,
                "train_loss": result.train_loss,
                "seconds": result.seconds,
                "eval_seconds": result.eval_seconds,
                "bytes_sent": result.bytes_sent,
                "bytes_received": result.bytes_received,
                "clients": replies,
                "bytes_sent_per_client": _per(result.bytes_sent, result.clients_sent),
                "bytes_received_per_client": _per(result.bytes_received, replies),
                **_variate_bytes(result),
                **{
                    client_eval_column(client): value
                    for client, value in sorted(result.client_eval_loss.items())
                },
                **_values(state.config_history.for_round(number), changed),
                **{pass_at_column(k): value for k, value in sorted(result.pass_at.items())},
            }
        )
        if "learning_rate" in changed and result.learning_rate is not None:
            rows[-1]["learning_rate"] = result.learning_rate  # as trained: schedule and all
    return rows


def extra_columns(state: RunState) -> list[str]:
    """Beyond EXPORT_COLUMNS and the clients' own eval: each live-changed key, the learning rate
    when a schedule set it, code_eval's pass@k."""
    columns = list(state.config_history.changed_keys())
    scheduled = any(r.learning_rate is not None for r in state.rounds.values())
    if scheduled and state.config.get("lr_schedule", "constant") != "constant":
        columns.append("learning_rate")
    return list(dict.fromkeys(columns))


def pass_at_column(k: int) -> str:
    return f"pass@{k}"


def client_eval_column(client: int) -> str:
    """The export column of a client's own eval loss (client_eval)."""
    return f"client_{client}_eval_loss"


def export(state: RunState, fmt: str) -> str:
    rows = export_rows(state)
    if fmt == "json":
        return (
            json.dumps(
                {
                    "run_id": state.run_id,
                    "status": state.status,
                    "best_round": state.best_round,
                    "best_eval_loss": state.best_eval_loss,
                    "model": state.model or None,
                    "rounds": rows,
                },
                indent=2,
            )
            + "\n"
        )
    evaluated = sorted({c for r in state.rounds.values() for c in r.client_eval_loss})
    scored = sorted({k for r in state.rounds.values() for k in r.pass_at})
    columns = EXPORT_COLUMNS + tuple(map(client_eval_column, evaluated))
    if any(result.variate_bytes for result in state.rounds.values()):
        columns += VARIATE_COLUMNS
    columns += tuple(map(pass_at_column, scored))
    return csv_text(rows, columns + tuple(extra_columns(state)))


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    """`rows` as CSV with a header line; None as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def _values(config: dict, keys: list[str]) -> dict:
    return {key: get_dotted(config, key) for key in keys}


VARIATE_COLUMNS = ("variate_bytes_sent", "variate_bytes_received")  # SCAFFOLD's runs


def _variate_bytes(result: RoundResult) -> dict[str, int]:
    """SCAFFOLD's control variates' share of the round's bytes, where it has one."""
    return dict(zip(VARIATE_COLUMNS, result.variate_bytes)) if result.variate_bytes else {}


def _per(total: int | None, clients: int | None) -> int | None:
    return None if total is None or not clients else total // clients
