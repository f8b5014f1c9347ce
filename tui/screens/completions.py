"""The `w` screen: what the global model wrote after each round (`generation_prompts`, greedy),
one round at a time, so round 1 can be read against round 5."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.record.run_state import RunState

_KEPT_CONTROLS = "\n\t"


class CompletionsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,w", "dismiss(None)", "Close"),
        Binding("left", "show(-1)", "Round back", priority=True),
        Binding("right", "show(1)", "Round fwd", priority=True),
    ]

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.rounds = [number for number, r in sorted(state.rounds.items()) if r.samples]
        self.state = state
        self.shown = len(self.rounds) - 1  # the latest round that wrote something

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("", id="question")
            with VerticalScroll(id="samples"):
                yield Static("", id="completions")
            yield Label("←/→ another round · escape closes", classes="hint")

    def on_mount(self) -> None:
        self._show_round()

    def action_show(self, step: int) -> None:
        if self.rounds:
            self.shown = min(max(self.shown + step, 0), len(self.rounds) - 1)
            self._show_round()

    def _show_round(self) -> None:
        title = self.query_one("#question", Label)
        body = self.query_one("#completions", Static)
        if not self.rounds:
            title.update("What the model writes")
            body.update(
                "nothing written yet: after each round the global model completes "
                "generation_prompts"
            )
            return
        number = self.rounds[self.shown]
        title.update(
            f"What the model wrote after round {number} ({self.shown + 1}/{len(self.rounds)})"
        )
        body.update(completions_text(self.state.rounds[number].samples))


def completions_text(samples: list[tuple[str, str]]) -> Text:
    """Each prompt (dim) and the model's completion after it. What a model writes reaches the
    terminal as plain text: no markup, no escape sequences."""
    text = Text()
    for prompt, completion in samples:
        text.append(printable(prompt), style="dim")
        text.append(printable(completion) + "\n", style="bold")
        text.append("─" * 40 + "\n", style="dim")
    return text


def printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in _KEPT_CONTROLS else "�" for c in text)
