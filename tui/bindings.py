"""A screen's keys as the one list of its actions: the footer, `?` and the command palette
(`ctrl+p`) all show what a screen's BINDINGS offer right now, and nothing else."""

from __future__ import annotations

from collections.abc import Iterable

from textual.actions import parse
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen


def action_names(bindings: Iterable[Binding]) -> set[str]:
    """ "patience" for `patience(1)`: the names `check_action` is asked about."""
    return {parse(binding.action)[1] for binding in bindings}


def offered_bindings(screen: Screen) -> list[Binding]:
    """The screen's bindings that it allows now (a replay offers no Stop, a live run no Play)."""
    offered = []
    for binding in Binding.make_bindings(screen.BINDINGS):
        _, name, parameters = parse(binding.action)
        if binding.show and screen.check_action(name, parameters):
            offered.append(binding)
    return offered


def palette_commands(screen: Screen) -> list[SystemCommand]:
    """One command palette entry per key the screen offers: its footer name, its tooltip."""
    return [
        SystemCommand(
            binding.description,
            binding.tooltip,
            lambda action=binding.action: screen.run_action(action),
        )
        for binding in offered_bindings(screen)
    ]
