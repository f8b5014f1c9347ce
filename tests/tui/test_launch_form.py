"""The launcher's config form: every key of a preset or a TOML file, changed as `--set` changes
it, saved as a TOML file that `fedtui run` takes, and started through the launcher."""

import io
from contextlib import redirect_stderr

from textual.widgets import Input, Static

from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.config_reference import declared_keys
from engine.core.errors import FedtuiError
from tests.tui.screens import answer, shown
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import launcher_app
from tui.cli import build_parser, main
from tui.screens.help import HelpScreen
from tui.screens.launch_form import LaunchFormScreen
from tui.screens.launcher import LauncherScreen
from tui.screens.monitor import MonitorScreen

SIZE = (120, 40)


def a_launcher(tmp_path, started: list[RunConfig], refusal: str | None = None):
    """The launcher; the configs it starts land in `started` (refused with `refusal`, if any)."""

    def start_run(config: RunConfig) -> ScriptedRun:
        if refusal:
            raise FedtuiError(refusal)
        started.append(config)
        return ScriptedRun(config=config)

    return launcher_app([tmp_path / "runs"], start_run=start_run, clock=None)


async def open_form(pilot, source: str = "") -> LaunchFormScreen:
    launcher = await shown(pilot.app, LauncherScreen)
    launcher.query_one("#config-path", Input).value = source
    launcher.query_one("#saved-runs").focus()
    await pilot.press("e")
    return await shown(pilot.app, LaunchFormScreen)


async def assign(pilot, form: LaunchFormScreen, item: str) -> None:
    """Type `item` in the edit line and enter it; until the form has applied or refused it."""
    field = form.query_one("#assignment", Input)
    before = said(form)
    field.focus()
    field.value = item
    await pilot.press("enter")
    await until(lambda: field.value == "" or said(form) != before)


def said(form: LaunchFormScreen) -> str:
    return str(form.query_one("#form-message", Static).render())


def rows(form: LaunchFormScreen) -> dict[str, list]:
    table = form.query_one("#all-keys")
    return {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}


def bold(form: LaunchFormScreen) -> set[str]:
    return {name for name, row in rows(form).items() if "bold" in str(getattr(row[0], "style", ""))}


def set_refusal(item: str) -> str:
    """What `fedtui run --set ITEM` says after `fedtui: error: `."""
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        assert main(["run", "--set", item]) == 2
    return stderr.getvalue().removeprefix("fedtui: error: ").rstrip("\n")


async def test_the_form_edits_rounds_and_mu_refuses_rounds_0_saves_a_runnable_toml_and_starts_it(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    started: list[RunConfig] = []
    async with a_launcher(tmp_path, started).run_test(size=SIZE) as pilot:
        form = await open_form(pilot)  # an empty config field: the default preset
        assert list(rows(form)) == [key.name for key in declared_keys()]
        mu = rows(form)["proximal_mu"]
        assert (mu[1], mu[2], mu[3]) == ("0.1", "float >= 0", "FedProx proximal term weight mu")

        await assign(pilot, form, "rounds=0")
        assert said(form) == set_refusal("rounds=0")
        assert form.edited == load_config("default") and not bold(form)

        await assign(pilot, form, "rounds=3")
        await assign(pilot, form, "proximal_mu=0.5")
        assert said(form) == "proximal_mu: 0.1 → 0.5"
        assert bold(form) == {"rounds", "proximal_mu"}
        assert (rows(form)["rounds"][1].plain, rows(form)["proximal_mu"][1].plain) == ("3", "0.5")

        form.query_one("#save-path", Input).value = "edited.toml"
        await pilot.press("ctrl+s")
        await until(lambda: said(form).startswith("saved"))
        args = build_parser().parse_args(["run", "edited.toml"])
        assert load_config(args.config, args.overrides) == form.edited  # as `fedtui run` reads it

        await pilot.press("ctrl+r")
        await shown(pilot.app, MonitorScreen)
        assert [(config.rounds, config.proximal_mu) for config in started] == [(3, 0.5)]
        assert started[0] == load_config(tmp_path / "edited.toml")


async def test_a_toml_file_opens_with_its_values_and_picking_a_key_offers_it_to_edit(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('rounds = 7\nname = "mine"\n\n[lora]\nenabled = true\n')
    async with a_launcher(tmp_path, []).run_test(size=SIZE) as pilot:
        form = await open_form(pilot, str(path))
        assert (rows(form)["rounds"][1], rows(form)["lora.enabled"][1]) == ("7", "true")
        assert not bold(form)  # changed from the file's config, not from the defaults

        table = form.query_one("#all-keys")
        table.focus()
        table.move_cursor(row=list(rows(form)).index("name"))
        await pilot.press("enter")
        await until(lambda: form.query_one("#assignment", Input).value == 'name="mine"')


async def test_saving_over_a_file_asks_first_and_keep_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("rounds = 7\n")
    async with a_launcher(tmp_path, []).run_test(size=SIZE) as pilot:
        form = await open_form(pilot, str(path))
        await assign(pilot, form, "rounds=8")
        assert form.query_one("#save-path", Input).value == str(path)  # its own file

        await pilot.press("ctrl+s")
        await answer(pilot, "keep")
        await shown(pilot.app, LaunchFormScreen)
        assert path.read_text() == "rounds = 7\n"

        await pilot.press("ctrl+s")
        await answer(pilot, "replace")
        await until(lambda: said(form).startswith("saved"))
        assert load_config(path).rounds == 8


async def test_a_refused_start_says_why_on_the_launcher_and_e_reopens_the_edits(tmp_path):
    started: list[RunConfig] = []
    app = a_launcher(tmp_path, started, refusal="CUDA is not available")
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        await assign(pilot, form, "rounds=3")
        await pilot.press("ctrl+r")

        launcher = await shown(app, LauncherScreen)
        error = launcher.query_one("#launch-error")
        await until(lambda: str(error.render()) == "CUDA is not available")
        reopened = await open_form(pilot)
        assert reopened.edited.rounds == 3 and bold(reopened) == {"rounds"}


async def test_escape_leaves_the_form_starting_nothing_and_question_mark_lists_its_keys(tmp_path):
    started: list[RunConfig] = []
    async with a_launcher(tmp_path, started).run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        form.query_one("#all-keys").focus()
        await pilot.press("question_mark")
        help_screen = await shown(pilot.app, HelpScreen)
        assert {"Start", "Save", "Leave"} <= {name for _, name, _ in help_screen.rows()}
        await pilot.press("escape")

        await shown(pilot.app, LaunchFormScreen)
        await pilot.press("escape")
        await shown(pilot.app, LauncherScreen)
        assert not started
