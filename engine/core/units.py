"""Numbers as fedtui writes them, in every view: byte sizes (binary units, everywhere: the event
log, the tables and the charts), wall times, losses, parameter counts."""

from __future__ import annotations

KIB = 1024
MIB = KIB**2
GIB = KIB**3


def duration(seconds: float | None) -> str:
    """Wall time as a clock reads: "0:42", "1:05", "7:29:29"."""
    if seconds is None:
        return "-"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def loss(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def byte_size(count: float | None) -> str:
    """ "1.5 GiB": binary units, as nvidia-smi and free print them."""
    if count is None:
        return "-"
    # the loop leaves `unit` at the one that fits
    for unit in ("B", "KiB", "MiB", "GiB"):  # noqa: B007
        if count < KIB:
            break
        count /= KIB
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"


def parameter_count(count: int) -> str:
    """ "331.2M", as model cards count parameters."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)
