"""A warm worker runs no ClientApp but fedtui's own: a task whose FAB names another ClientApp,
or brings modules of its own, is refused before Flower unpacks it (engine.flower.own_app,
swapped in for Flower's `install_from_fab` while the worker handles a message). So is Flower's
own `flwr-clientapp` as fedtui starts it (no warm workers, or a worker gone)."""

import shutil

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.supernode.runtime import run_clientapp

from engine.flower import home as flower_home, own_app, worker

pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")

FEDTUIS = own_app.clientapp_of((own_app.APP_DIR / "pyproject.toml").read_text())


def fab(tmp_path, clientapp=FEDTUIS, modules=()):
    """fedtui's app, built as `flwr run` builds it, with another ClientApp named or `modules`
    added."""
    folder = tmp_path / "app"
    shutil.copytree(own_app.APP_DIR, folder)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'"{FEDTUIS}"', f'"{clientapp}"'))
    for module in modules:
        (folder / module).parent.mkdir(parents=True, exist_ok=True)
        (folder / module).write_text("raise SystemExit('the sender runs as you')\n")
    return build_fab_from_disk(folder)


def install_as_the_worker_does(fab_bytes):
    """What Flower's ClientApp runtime calls with a task's FAB, while the worker handles it."""
    with worker._flower_runtime_in_process(announce=lambda message: None):
        return run_clientapp.install_from_fab(fab_bytes, skip_prompt=True)


@pytest.fixture(autouse=True)
def flwr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    return tmp_path / "flwr-home"


def test_fedtuis_own_app_is_installed(tmp_path, flwr_home):
    installed = install_as_the_worker_does(fab(tmp_path))

    assert installed.is_relative_to(flwr_home)
    assert own_app.clientapp_of((installed / "pyproject.toml").read_text()) == FEDTUIS


def test_a_fab_naming_another_clientapp_is_refused_before_it_is_unpacked(tmp_path, flwr_home):
    with pytest.raises(own_app.ForeignApp, match="not 'attacker.client:app'"):
        install_as_the_worker_does(fab(tmp_path, clientapp="attacker.client:app"))

    assert not flwr_home.exists() or not any(flwr_home.rglob("pyproject.toml"))


@pytest.mark.parametrize("module", ["engine/__init__.py", "torch.py", "helpers/task.py"])
def test_a_fab_bringing_modules_of_its_own_is_refused(tmp_path, module):
    """Flower puts the FAB's folder first on sys.path for the rest of the process: a module
    there would shadow one the worker imports later."""
    with pytest.raises(own_app.ForeignApp, match="also holds"):
        install_as_the_worker_does(fab(tmp_path, modules=[module]))


def test_a_fab_that_is_no_zip_archive_is_refused():
    with pytest.raises(own_app.ForeignApp, match="unreadable"):
        install_as_the_worker_does(b"not a zip archive")


def test_flowers_own_names_are_back_after_the_message():
    original = run_clientapp.install_from_fab

    with worker._flower_runtime_in_process(announce=lambda message: None):
        assert run_clientapp.install_from_fab is not original

    assert run_clientapp.install_from_fab is original


def test_flowers_own_clientapp_as_fedtui_starts_it_refuses_them_too(tmp_path, monkeypatch):
    monkeypatch.setattr(run_clientapp, "install_from_fab", run_clientapp.install_from_fab)
    flower_home.write_guards(tmp_path)
    guard = (tmp_path / flower_home.GUARDS / "flwr-clientapp").read_text()
    prelude = flower_home.PRELUDES["flwr-clientapp"]
    assert guard.index(prelude) < guard.index("run_guarded(")  # before Flower's entry runs

    exec(prelude, {})  # what the guard runs first, in this process

    with pytest.raises(own_app.ForeignApp):
        run_clientapp.install_from_fab(fab(tmp_path, clientapp="attacker.client:app"))
    assert run_clientapp.install_from_fab(fab(tmp_path / "ours"), skip_prompt=True).is_dir()
