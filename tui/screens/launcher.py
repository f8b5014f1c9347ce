"""The launcher: start the default run or one from a config (as it is, or changed in the config
form first), or pick saved runs to replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.errors import FedtuiError
from engine.core.status import LIVE, Status
from engine.core.strategies import strategy_parameters
from engine.core.units import loss
from engine.record.run_folders import family, in_families, list_runs, read_run_events
from engine.run.followed_run import FollowedRun
from engine.run.sweep import is_sweep
from tui import format as fmt
from tui.screens.help import HelpScreen
from tui.screens.launch_form import LaunchFormScreen
from tui.screens.live_actions import LiveRun
from tui.screens.monitor import MonitorScreen

RUN_COLUMNS = ("run", "strategy", "parameters", "rounds", "best eval loss", "status", "date")
MARK = "● "


class LauncherScreen(Screen):
    BINDINGS = [
        Binding(
            "d",
            "start_default",
            "Start default run",
            tooltip="Start the offline default run (tiny OPT, 2 clients) and watch it",
        ),
        Binding(
            "e",
            "edit_config",
            "Edit config",
            tooltip="Open the config typed above (empty: default) in a form: change, save, start",
        ),
        Binding(
            "space", "mark", "Mark for comparison", tooltip="Mark or unmark the selected saved run"
        ),
        Binding("c", "compare", "Compare marked", tooltip="Replay the marked runs overlaid"),
        Binding("r", "refresh_runs", "Refresh", tooltip="Read the saved runs again"),
        Binding("question_mark", "help", "Help", tooltip="Every key of this screen"),
        Binding("q", "app.quit", "Quit", tooltip="Quit fedtui"),
    ]

    def __init__(
        self, *, saved_dirs: list[Path], start_run: Callable[[RunConfig], LiveRun], clock
    ) -> None:
        super().__init__()
        self.saved_dirs = saved_dirs
        self.start_run = start_run
        self.clock = clock
        self.marked: list[str] = []
        self.running: set[str] = set()  # run folders whose controller is alive: enter attaches
        self.shown_names: dict[str, str] = {}  # run folder: its name in the table
        self._starting = False  # a run's config is being checked: one start at a time
        # the form's config whose start was refused, by its source: `e` reopens it as it was
        self.refused_edit: tuple[str, RunConfig] | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(
                ("fedtui", "bold cyan"), "  federated fine-tuning of language models, on Flower"
            ),
            id="title",
        )
        with Horizontal(id="start-row"):
            yield Button("Start the default run", id="start-default", variant="primary")
            yield Input(placeholder="config file (.toml) or preset name", id="config-path")
            yield Button("Start from config", id="start-config")
            yield Button("Edit config", id="edit-config")
        yield Label("", id="launch-error")
        yield Label(
            f"Saved runs in {', '.join(str(d) for d in self.saved_dirs)}: enter "
            f"replays (a running run: attaches), space marks, c compares the marked runs",
            id="runs-caption",
        )
        yield DataTable(id="saved-runs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#saved-runs", DataTable).add_columns(*RUN_COLUMNS)
        self.action_refresh_runs()
        self.query_one("#saved-runs", DataTable).focus()

    def action_refresh_runs(self) -> None:
        table = self.query_one("#saved-runs", DataTable)
        table.clear()
        self.running.clear()
        for folder in self.saved_dirs:
            if not folder.is_dir():
                continue
            sweeps = sorted(path for path in folder.iterdir() if is_sweep(path))
            for (listing, depth), prefix in [
                *((run, "") for run in in_families(list(reversed(list_runs(folder))))),
                *(
                    (run, f"{sweep.name}/")
                    for sweep in sweeps
                    for run in in_families(list_runs(sweep))
                ),
            ]:
                key = str(listing.path)
                self.shown_names[key] = fmt.family_name(prefix + listing.path.name, depth)
                table.add_row(*self._row(listing), key=key)
                if listing.status in LIVE:
                    self.running.add(key)

    def _label(self, key: str) -> Text:
        marked = key in self.marked
        return Text(
            (MARK if marked else "") + self.shown_names[key], style="bold" if marked else ""
        )

    def _row(self, listing) -> list:
        state = listing.state
        name = self._label(str(listing.path))
        if state is None:
            return [
                name,
                Text(listing.problem or Status.UNREADABLE, style="red"),
                "",
                "",
                "",
                "",
                "",
            ]
        config = state.config
        return [
            name,
            config.get("strategy", "?"),
            strategy_parameters(config) or "-",
            f"{state.rounds_completed}/{state.total_rounds or '?'}",
            loss(state.best_eval_loss),
            listing.status,
            fmt.date_time(state.started_at),
        ]

    # -- starting runs ------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start-default":
            self.action_start_default()
        elif event.button.id == "start-config":
            self._start_from(self.query_one("#config-path", Input).value.strip())
        elif event.button.id == "edit-config":
            self.action_edit_config()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._start_from(event.value.strip())

    def action_start_default(self) -> None:
        self._start_from("default")

    def _start_from(self, source: str) -> None:
        error = self.query_one("#launch-error", Label)
        if not source:
            error.update(Text("type a config file path or a preset name", style="red"))
            return
        try:
            config = load_config(source)
        except FedtuiError as err:
            error.update(Text(str(err), style="bold red"))
            return
        self._start(config, source)

    def action_edit_config(self) -> None:
        source = self.query_one("#config-path", Input).value.strip() or "default"
        try:
            loaded = load_config(source)
        except FedtuiError as err:
            self.query_one("#launch-error", Label).update(Text(str(err), style="bold red"))
            return
        edited = (
            self.refused_edit[1] if self.refused_edit and self.refused_edit[0] == source else None
        )
        self.app.push_screen(
            LaunchFormScreen(source, loaded, edited),
            lambda config: self._start_edited(source, config),
        )

    def _start_edited(self, source: str, config: RunConfig | None) -> None:
        if config is not None:
            self.refused_edit = (source, config)
            self._start(config, f"{source} as edited")

    def _start(self, config: RunConfig, source: str) -> None:
        if self._starting:
            return
        self._starting = True
        self.query_one("#launch-error", Label).update(
            Text(f"checking {source} (model, data, devices)...", style="dim")
        )
        # start_run checks the config against the machine first (engine.ml.preflight), which can
        # take a while (tokenizing a dataset): off the UI thread
        self.run_worker(lambda: self._start_checked(config), thread=True)

    def _start_checked(self, config: RunConfig) -> None:
        try:
            live = self.start_run(config)
        except (FedtuiError, OSError) as err:  # OSError: the machine's (a full disk, say)
            self.app.call_from_thread(self._refused, str(err))
            return
        self.app.call_from_thread(self._open_live, live)

    def _refused(self, message: str) -> None:
        self._starting = False
        self.query_one("#launch-error", Label).update(Text(message, style="bold red"))

    def _open_live(self, live: LiveRun) -> None:
        self._starting = False
        self.refused_edit = None
        self.query_one("#launch-error", Label).update("")
        self.app.push_screen(MonitorScreen(live=live, clock=self.clock))

    # -- replaying runs -------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value  # every row's key is its run folder
        if key in self.running:
            self.app.push_screen(MonitorScreen(live=FollowedRun(Path(key)), clock=self.clock))
        elif key is not None:  # a run with its forks: a family, overlaid
            self._replay([str(path) for path in family(Path(key))])

    def action_mark(self) -> None:
        table = self.query_one("#saved-runs", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key is None:
            return
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        table.update_cell(key, table.ordered_columns[0].key, self._label(key))

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with space first")
            return
        self._replay(list(self.marked))

    def _replay(self, paths: list[str]) -> None:
        try:
            recorded = [(self._plain_name(p), read_run_events(p)) for p in paths]
        except FedtuiError as err:
            self.notify(str(err), severity="error")
            return
        self.app.push_screen(MonitorScreen(recorded=recorded, folder=Path(paths[0])))

    def _plain_name(self, path: str) -> str:
        """A run's name without its place in a family."""
        return self.shown_names.get(path, Path(path).name).lstrip().removeprefix("↳ ")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))
