"""Small text formatters shared by the widgets."""

from __future__ import annotations

import time


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock_time(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t is not None else "--:--:--"


def date_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else "-"


def loss(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def byte_size(count: float | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):  # binary units, as nvidia-smi and free print
        if count < 1024:
            break
        count /= 1024
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"


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
