"""Waiting for a screen of the app under test, and answering its dialogs, as a person would."""

from tests.waiting import until
from tui.screens.confirm import ConfirmScreen


async def shown(app, screen_type):
    """Wait until the app shows a screen of `screen_type`; that screen."""
    return await until(
        lambda: isinstance(app.screen, screen_type) and app.screen.is_mounted and app.screen
    )


async def answer(pilot, button):
    """Click the confirm dialog's answer `button` once the dialog is laid out (a click before
    that lands wherever the layout has not yet put the button)."""
    dialog = await shown(pilot.app, ConfirmScreen)
    await until(lambda: dialog.query_one(f"#{button}").region.area)
    assert await pilot.click(f"#{button}")
