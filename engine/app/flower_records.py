"""Numbers and error reasons read back out of Flower's messages.

A `MetricRecord` or `ConfigRecord` value may be a number, a list, a string or bytes; every value
fedtui sends itself is a number. `number` says so to the type checker, and fails naming the key
when a message does not match.
"""

from __future__ import annotations

import re

from flwr.app import ConfigRecord, MetricRecord


def number(record: MetricRecord | ConfigRecord, key: str, default: float | None = None) -> float:
    """`record[key]`, a number (an int stays an int); `default` where the key is absent."""
    if default is not None and key not in record:
        return default
    value = record[key]
    if not isinstance(value, int | float):
        raise TypeError(f"record value {key!r} is not a number: {value!r}")
    return value


# How Flower's ClientApp runtime writes an exception a ClientApp raised (run_clientapp.py).
_RAISED = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>:<'(.*)'>", re.DOTALL)


def error_text(reason: str | None) -> str:
    """A reply's error reason as one readable line: "Name: text" for an exception the ClientApp
    raised (Flower sends "<class 'module.Name'>:<'text'>"), else the reason itself."""
    if not reason:
        return "no reason given"
    raised = _RAISED.fullmatch(reason.strip())
    return f"{raised[1]}: {raised[2]}" if raised else reason
