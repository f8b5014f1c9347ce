"""Text formatters the widgets share beyond the engine's own (`engine.core.units`): times of day,
dates, a run's line in comparisons; when a run counts as one of many clients."""

from __future__ import annotations

import time

from engine.core.status import Status
from engine.core.units import byte_size, duration, loss

# A run's status as every view colours it (a replay's header says "replay").
STATUS_STYLES = {
    Status.STARTING: "bold yellow",
    Status.RUNNING: "bold green",
    Status.STOPPING: "bold yellow",
    Status.COMPLETED: "bold cyan",
    Status.STOPPED: "bold yellow",
    Status.ABORTED: "bold red",
    Status.FAILED: "bold red",
    Status.INTERRUPTED: "bold red",
    "replay": "bold magenta",
}

# Past this many clients the chart draws their spread rather than a line each, and the header
# counts who trained.
MANY_CLIENTS = 6


def many_clients(state) -> bool:
    """Whether a run has more clients than lines a chart can tell apart, or samples them."""
    return bool(state.config.get("clients_per_round")) or len(state.clients) > MANY_CLIENTS


def clock_time(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t is not None else "--:--:--"


def date_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else "-"


def run_summary(state) -> dict[str, str]:
    """A run's line in comparisons: rounds, best and final eval loss, wall time, bytes."""
    evaluated = [r for _, r in sorted(state.rounds.items()) if r.eval_loss is not None]
    exchanged = sum((r.bytes_sent or 0) + (r.bytes_received or 0) for r in state.rounds.values())
    return {
        "rounds": f"{state.rounds_completed}/{state.total_rounds or '?'}",
        "best_eval": loss(state.best_eval_loss),
        "best_round": "-" if state.best_round is None else str(state.best_round),
        "final_eval": loss(evaluated[-1].eval_loss if evaluated else None),
        "wall": duration(state.elapsed),
        "exchanged": byte_size(exchanged) if exchanged else "-",
    }


def run_table_header(name_width: int) -> str:
    """The header of a table of runs, one `run_table_row` each."""
    return (
        f"{'RUN':<{name_width}} {'STATUS':<10} {'ROUNDS':>7} {'BEST EVAL':>10} {'@':>3} "
        f"{'FINAL EVAL':>10} {'WALL':>8} {'EXCHANGED':>10}"
    )


def run_table_row(name: str, status: str, state, name_width: int) -> str:
    """A run's line under `run_table_header`: status, rounds, best and final eval, wall, bytes."""
    summary = run_summary(state)
    return (
        f"{name:<{name_width}} {status:<10} {summary['rounds']:>7} "
        f"{summary['best_eval']:>10} {summary['best_round']:>3} "
        f"{summary['final_eval']:>10} {summary['wall']:>8} {summary['exchanged']:>10}"
    )


def family_name(name: str, depth: int) -> str:
    """A run's name in a listing of families: a fork indented under its parent."""
    return f"{'  ' * (depth - 1)}↳ {name}" if depth else name


def forked_text(state) -> str:
    """ ", forked from <run> @ round 2", for a fork."""
    parent = state.forked_from
    return f", forked from {parent['run']} @ round {parent['round']}" if parent else ""
