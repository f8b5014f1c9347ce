"""Numbers read back out of Flower's records.

A `MetricRecord` or `ConfigRecord` value may be a number, a list, a string or bytes; every value
fedtui sends itself is a number. `number` says so to the type checker, and fails naming the key
when a message does not match.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, MetricRecord


def number(record: MetricRecord | ConfigRecord, key: str, default: float | None = None) -> float:
    """`record[key]`, a number (an int stays an int); `default` where the key is absent."""
    if default is not None and key not in record:
        return default
    value = record[key]
    if not isinstance(value, int | float):
        raise TypeError(f"record value {key!r} is not a number: {value!r}")
    return value
