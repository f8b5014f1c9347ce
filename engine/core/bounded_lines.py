"""Reading a file line by line within bounds: a record may come from anyone (a run folder someone
sent), and a reader that loads a 100 MB line, or a file of a billion lines, before it looks at it
can be made to exhaust memory or never finish.

`bounded_lines` reads at most `max_line` bytes of a line into memory (an over-long line is skipped
in chunks and reported, never loaded), and stops after `max_bytes` bytes or `max_lines` lines,
saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

_CHUNK = 1 << 20


@dataclass
class RawLine:
    number: int  # from 1
    raw: bytes  # without its newline; empty when `too_long`
    ended: bool  # a newline ended it (else it is the file's last piece: maybe torn)
    too_long: bool = False  # longer than max_line: skipped, not read into memory


@dataclass
class Cut:
    """Where reading stopped before the end of the file, and why."""

    number: int
    why: str


def bounded_lines(
    file: BinaryIO, max_line: int, max_bytes: int, max_lines: int
) -> Iterator[RawLine | Cut]:
    """The lines of `file`, then a `Cut` when a bound stopped the reading before its end."""
    read, number = 0, 0
    while True:
        if number >= max_lines:
            if file.read(1):
                yield Cut(number + 1, f"more than {max_lines} lines: the rest was not read")
            return
        if read >= max_bytes:
            if file.read(1):
                yield Cut(number + 1, f"more than {_size(max_bytes)}: the rest was not read")
            return
        raw = file.readline(min(max_line + 1, max_bytes - read + 1))
        if not raw:
            return
        number += 1
        read += len(raw)
        ended = raw.endswith(b"\n")
        if ended or len(raw) <= max_line:
            yield RawLine(number, raw[:-1] if ended else raw, ended)
            continue
        # longer than max_line: skip the rest of it a chunk at a time, within the byte bound
        while not ended and raw and read < max_bytes:
            raw = file.readline(min(_CHUNK, max_bytes - read))
            read += len(raw)
            ended = raw.endswith(b"\n")
        yield RawLine(number, b"", ended, too_long=True)


def _size(count: int) -> str:
    return f"{count / (1 << 20):g} MiB" if count >= 1 << 20 else f"{count} bytes"
