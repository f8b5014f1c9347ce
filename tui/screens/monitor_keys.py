"""The monitor's keys: live-run control, replay control, and views of either."""

from __future__ import annotations

from textual.binding import Binding

from tui.bindings import action_names
from tui.chart_views import VIEWS
from tui.widgets.run_chart import SMOOTHING_WEIGHT

LIVE_BINDINGS = [
    Binding(
        "s",
        "stop",
        "Stop after round",
        tooltip="End the live run once the current round is evaluated",
    ),
    Binding("a", "abort", "Abort", tooltip="End every process of the live run now"),
    Binding(
        "e",
        "toggle_early_stopping",
        "Early stop on/off",
        tooltip="Automatic early stopping on central eval loss, on or off",
    ),
    Binding(
        "right_square_bracket",
        "patience(1)",
        "Patience +1",
        tooltip="Early stopping waits one more round without improvement",
    ),
    Binding(
        "left_square_bracket",
        "patience(-1)",
        "Patience -1",
        tooltip="Early stopping waits one round less",
    ),
    Binding(
        "f",
        "change_config",
        "Change config",
        tooltip="Change the live run from its next round: learning rate, epochs, mu, rounds...",
    ),
    Binding(
        "h",
        "hold",
        "Hold/continue",
        tooltip="Hold the run after its current round (processes stay up); again: go on",
    ),
    Binding(
        "d",
        "detach",
        "Detach",
        tooltip="Leave the run going in the background; fedtui attach comes back to it",
    ),
]
REPLAY_BINDINGS = [
    Binding(
        "space",
        "play_pause",
        "Play/pause",
        priority=True,
        tooltip="Replay: play or pause (at the end, play starts over)",
    ),
    Binding(
        "left",
        "step(-1)",
        "Round back",
        priority=True,
        tooltip="Replay: show up to the end of the previous round",
    ),
    Binding(
        "right",
        "step(1)",
        "Round fwd",
        priority=True,
        tooltip="Replay: show up to the end of the next round",
    ),
    Binding(
        "end", "jump_end", "End", priority=True, tooltip="Replay: jump to the end, the whole run"
    ),
    Binding("plus", "faster", "Faster", tooltip="Replay: play faster (up to max)"),
    Binding("minus", "slower", "Slower", tooltip="Replay: play slower (down to 1x)"),
]
CHART_VIEWS_GROUP = Binding.Group("Chart", compact=True)
VIEW_BINDINGS = [
    *(
        Binding(
            str(number),
            f"chart_view('{view.key}')",
            f"{view.name} chart",
            tooltip=f"Chart: {view.title}",
            group=CHART_VIEWS_GROUP,
        )
        for number, view in enumerate(VIEWS, start=1)
    ),
    Binding("l", "toggle_chart('log_y')", "Log-Y", tooltip="Chart: logarithmic y axis"),
    Binding(
        "m",
        "toggle_chart('smoothing')",
        "Smoothing",
        tooltip=f"Chart: debiased EMA smoothing ({SMOOTHING_WEIGHT})",
    ),
    Binding(
        "c",
        "toggle_chart('show_clients')",
        "Client lines",
        tooltip="Chart: per-client lines",
    ),
    Binding(
        "i",
        "toggle_chart('client_lines')",
        "Each client",
        tooltip="Chart with many clients: a line per client instead of their spread",
    ),
    Binding(
        "o",
        "sort_clients",
        "Sort clients",
        tooltip="Clients table: sort by client, state, last round's loss or memory",
    ),
    Binding(
        "w",
        "samples",
        "Samples",
        tooltip="What the global model wrote after each round (generation_prompts)",
    ),
    Binding(
        "ctrl+s", "screenshot", "Screenshot", tooltip="An SVG of this screen, into the run folder"
    ),
    Binding("question_mark", "help", "Help", tooltip="Every key of this screen"),
    Binding(
        "q",
        "quit_monitor",
        "Quit",
        tooltip="Quit fedtui (a live run: asks whether to detach, stop or abort)",
    ),
]
CHART_OPTION_NAMES = {  # what toggle_chart's notification calls each option
    "log_y": "log-Y",
    "smoothing": "smoothing",
    "show_clients": "client lines",
    "client_lines": "a line per client",
}
LIVE_ONLY = action_names(LIVE_BINDINGS)
REPLAY_ONLY = action_names(REPLAY_BINDINGS)
