"""Pure helpers for the run chart: smoothing, downsampling, log-scale ticks."""

from __future__ import annotations

import math


def debiased_ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average divided by (1 - weight^n), so
    the first points are not dragged towards zero."""
    smoothed, last = [], 0.0
    for count, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**count) if weight < 1 else value)
    return smoothed


def downsample(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """At most `limit` evenly spaced points, always keeping the first and the last."""
    if len(xs) <= limit or limit < 2:
        return xs, ys
    step = (len(xs) - 1) / (limit - 1)
    picks = sorted({round(i * step) for i in range(limit)})
    return [xs[i] for i in picks], [ys[i] for i in picks]


def log_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], list[str]]:
    """Tick positions in log10 space with labels in the original units (plotext's own log
    scale is broken, so the chart plots log10 values)."""
    low_log, high_log = math.log10(low), math.log10(high)
    if high_log - low_log < 1e-9:
        return [low_log], [f"{low:.3g}"]
    positions = [low_log + (high_log - low_log) * i / (count - 1) for i in range(count)]
    return positions, [f"{10**p:.3g}" for p in positions]
