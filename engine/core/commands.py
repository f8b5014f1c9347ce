"""Commands: what a viewer asks of a run's controller (through the run's control socket,
engine.net.control_socket) and what the controller tells the ServerApp (through the event
channel, engine.net.channel). Declared once, as events are: each command's name and its fields.
`make` builds one; `check` refuses a malformed one with a ValueError saying why (a request comes
from another process: nothing in it is trusted before it is checked).

| command         | from -> to                          | fields ([optional])                   |
|-----------------|-------------------------------------|---------------------------------------|
| stop            | viewer -> controller -> ServerApp   | [source]                              |
| abort           | viewer -> controller                |                                       |
| set             | viewer -> controller -> ServerApp   | changes ({key: value}), [source]      |
| hold            | viewer -> controller -> ServerApp   | [source]                              |
| continue        | viewer -> controller -> ServerApp   | [source]                              |
| detach          | viewer -> controller                |                                       |
| client_of_node  | controller -> ServerApp             | node_id, client                       |
| client_crashed  | controller -> ServerApp             | client, reason, node_dead,            |
|                 |                                     | coming_back, [round]                  |
| client_training | controller -> ServerApp             | client, round, done                   |
"""

from __future__ import annotations

from typing import Any

from engine.core import events as ev

STOP = "stop"
ABORT = "abort"
SET = "set"
HOLD = "hold"
CONTINUE = "continue"
DETACH = "detach"
CLIENT_OF_NODE = "client_of_node"
CLIENT_CRASHED = "client_crashed"
CLIENT_TRAINING = "client_training"

Command = dict[str, Any]

# Each command's fields: their type, and whether the command needs them.
FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    STOP: {"source": (str, False)},
    ABORT: {},
    SET: {"changes": (dict, True), "source": (str, False)},
    HOLD: {"source": (str, False)},
    CONTINUE: {"source": (str, False)},
    DETACH: {},
    CLIENT_OF_NODE: {"node_id": (int, True), "client": (int, True)},
    CLIENT_CRASHED: {
        "client": (int, True),
        "reason": (str, True),
        "node_dead": (bool, True),
        "coming_back": (bool, True),
        "round": (int, False),
    },
    CLIENT_TRAINING: {"client": (int, True), "round": (int, True), "done": (bool, True)},
}

_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", dict: "a table"}


def make(name: str, **fields: Any) -> Command:
    """A command with `fields` (those None left out); ValueError when it is not well formed."""
    return check(
        {"command": name, **{key: value for key, value in fields.items() if value is not None}}
    )


def check(command: Any) -> Command:
    """`command` itself when it is a well-formed command, else ValueError saying why."""
    if not isinstance(command, dict) or not isinstance(command.get("command"), str):
        raise ValueError('a command must be a JSON object with a "command"')
    name = command["command"]
    if name not in FIELDS:
        raise ValueError(f"unknown command {name!r}")
    fields = FIELDS[name]
    unknown = sorted(set(command) - {"command", *fields})
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {', '.join(unknown)}")
    for field, (type_, required) in fields.items():
        value = command.get(field)
        if value is None:
            if required:
                raise ValueError(f"{name}: {field} is missing")
        elif not isinstance(value, type_) or (type_ is int and isinstance(value, bool)):
            raise ValueError(f"{name}: {field} must be {_TYPE_NAMES[type_]}")
    return command


def training_of(event: ev.Event) -> Command | None:
    """What the ServerApp is told of a client's progress event: that the client began a round's
    training (its first step) or ended it (its last); None for the steps between, and for an
    event whose fields are not whole numbers (a peer's events are not trusted)."""
    if event["type"] != ev.CLIENT_PROGRESS or event["step"] not in (1, event["steps_total"]):
        return None
    try:
        return make(
            CLIENT_TRAINING,
            client=event["client"],
            round=event["round"],
            done=event["step"] == event["steps_total"],
        )
    except ValueError:
        return None
