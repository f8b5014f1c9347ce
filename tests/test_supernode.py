"""fedtui's SuperNode is Flower's, with the idle poll's hard-coded 3 s sleep cut to POLL_S, and
its Runtime API (the ClientApp's) answering only the user running it, from a server that ticks
less often (engine.flower.supernode).
tests/e2e/test_other_users.py meets the refusal from another user of this host, live."""

import os
import sys
import time

import flwr.supernode.main
import uvicorn
from flwr.supernode import start_client_internal

from engine.flower import server_ticks, supernode
from engine.flower.owner_only import OwnerOnly


def run_main(monkeypatch):
    """supernode.main() up to Flower's entry, which records what it would run with: the
    polling module's `time`, the Runtime API's app, the environment."""
    seen = []
    monkeypatch.setattr(start_client_internal, "time", time)  # put back after the test
    monkeypatch.setattr(uvicorn.Server, "main_loop", uvicorn.Server.main_loop)
    monkeypatch.setattr(flwr.supernode.main, "create_app", flwr.supernode.main.create_app)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn: X-Forwarded-For from anyone
    monkeypatch.setattr(sys, "argv", ["python -m engine.flower.supernode", "--insecure"])
    monkeypatch.setattr(
        supernode,
        "flower_supernode",
        lambda: seen.append(
            (start_client_internal.time, flwr.supernode.main.create_app(), dict(os.environ))
        ),
    )
    supernode.main()
    (ran_with,) = seen
    return ran_with


def test_flowers_own_entry_runs_with_short_sleeps_in_its_polling_module(monkeypatch):
    polling_time, _, _ = run_main(monkeypatch)

    assert isinstance(polling_time, supernode.ShortSleeps)
    assert uvicorn.Server.main_loop is server_ticks.main_loop  # its Runtime API's server
    assert sys.argv == ["flower-supernode", "--insecure"]  # Flower parses the same arguments
    assert polling_time.monotonic is time.monotonic  # all but sleep is the real module
    started = time.monotonic()
    polling_time.sleep(3)  # Flower's idle poll
    assert time.monotonic() - started < 2.0


def test_the_runtime_api_answers_only_the_user_running_it_on_every_path(monkeypatch):
    _, app, env = run_main(monkeypatch)

    (guard,) = [entry for entry in app.user_middleware if entry.cls is OwnerOnly]
    assert not guard.kwargs  # no path open to anyone: no Fleet API here
    assert env["FORWARDED_ALLOW_IPS"] == ""  # uvicorn trusts no proxy's header
