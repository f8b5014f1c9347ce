"""Whether a FAB is fedtui's own app: the only one a warm worker runs.

A task's FAB names the ClientApp that runs it (`[tool.flwr.app.components] clientapp` in its
pyproject.toml), and Flower unpacks it and puts its folder first on `sys.path` before loading
that ClientApp, where it stays for the life of the process. A warm worker runs with this user's
rights, model and data, for every message of every run its SuperNode is sent; a joined client
(`fedtui join`) gets its tasks from another host. So the worker takes only a FAB that is
fedtui's (engine/app/fab): none of its files but those fedtui's app folder holds, no modules
of its own, and fedtui's ClientApp named. Anything else is refused before it is unpacked,
and the task is answered with an error naming the reason (Flower's runtime replies with the
exception). So is Flower's own `flwr-clientapp`, as fedtui starts it (`refuse_foreign_apps`,
run by its guard: without warm workers, and when a worker is gone).
"""

from __future__ import annotations

import io
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.flower import internals

APP_DIR = Path(__file__).parents[1] / "app" / "fab"
FAB_MANIFEST = ".info/CONTENT"  # Flower's list of the FAB's files and their hashes


class ForeignApp(Exception):
    """The FAB is not fedtui's app."""


def clientapp_of(pyproject: bytes | str) -> object:
    """The ClientApp a pyproject.toml names (its `[tool.flwr.app.components] clientapp`)."""
    text = pyproject.decode() if isinstance(pyproject, bytes) else pyproject
    config = tomllib.loads(text)
    return (
        config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {}).get("clientapp")
    )


def check(fab: bytes) -> None:
    """Raise ForeignApp unless `fab` (a FAB's bytes) is fedtui's own app."""
    ours = {path.relative_to(APP_DIR).as_posix() for path in APP_DIR.rglob("*") if path.is_file()}
    expected = clientapp_of((APP_DIR / "pyproject.toml").read_text())
    try:
        with zipfile.ZipFile(io.BytesIO(fab)) as archive:
            names = set(archive.namelist())
            named = clientapp_of(archive.read("pyproject.toml"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ForeignApp(f"fedtui runs only its own app; this FAB is unreadable: {err}") from None
    if named != expected:
        raise ForeignApp(f"fedtui runs only its own ClientApp ({expected}), not {named!r}")
    if extra := sorted(names - ours - {FAB_MANIFEST}):
        raise ForeignApp(f"fedtui runs only its own app; this FAB also holds {extra[:5]}")


def only_fedtuis(install_from_fab: Callable[..., Any]) -> Callable[..., Any]:
    """Flower's `install_from_fab`, refusing a FAB (bytes or a file) that is not fedtui's."""

    def install_only_fedtuis_app(fab_file: Any, *args: Any, **kwargs: Any) -> Any:
        check(fab_file if isinstance(fab_file, bytes) else Path(fab_file).read_bytes())
        return install_from_fab(fab_file, *args, **kwargs)

    return install_only_fedtuis_app


def refuse_foreign_apps() -> None:
    """In a process that runs Flower's ClientApp entry: it installs only fedtui's app."""
    internals.swap(internals.CLIENTAPP_INSTALL, only_fedtuis(internals.CLIENTAPP_INSTALL.resolve()))
