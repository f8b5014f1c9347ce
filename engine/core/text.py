"""Text that is safe on a terminal: what fedtui shows may come from a peer (a joined client's
host name, an error it reports) or from a run folder someone sent, and a terminal obeys the
control sequences in what it prints (OSC 52 writes the clipboard, CSI 2J clears the screen).

`printable` strips them, and every other control character: events are cleaned where they are
stamped (engine.core.events.stamp, live) and where they are read back (`parse_line`: replay,
`runs`, `export`, a followed run), and `describe` makes each sentence one line.
"""

from __future__ import annotations

import re
from typing import Any

# Whole sequences first, so that their parameters do not stay behind as text: CSI (7-bit ESC [
# and 8-bit 0x9b), OSC (ESC ] and 0x9d, ended by BEL or ST, or by nothing), the string
# sequences DCS, SOS, PM and APC, and any other escape (ESC and the byte after it).
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# What is left: C0 but tab and newline, DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")


def printable(text: str, lines: bool = False) -> str:
    """`text` without control sequences or characters; `lines`: keep its line breaks (as \\n)
    and tabs, else each becomes a space (one line, as a message is shown)."""
    text = _LINE_BREAK.sub("\n", text) if lines else _LINE_BREAK.sub(" ", text).replace("\t", " ")
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def printable_fields(value: Any) -> Any:
    """An event (or any JSON value) with every string in it `printable`, line breaks kept (a
    generated sample is code): keys and values, however deep."""
    if isinstance(value, str):
        return printable(value, lines=True)
    if isinstance(value, dict):
        return {printable_fields(key): printable_fields(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable_fields(item) for item in value]
    return value
