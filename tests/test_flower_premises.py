"""What fedtui assumes of Flower's internals (engine.flower.internals) holds for the installed
Flower: after an upgrade, this is the test that fails, with the list of what broke."""

import dataclasses
import time

import pytest
import uvicorn
from flwr.supernode import start_client_internal

from engine.flower import internals, server_ticks


def test_every_premise_holds_for_the_installed_flower():
    assert internals.broken_premises() == []


def test_every_premise_says_what_it_is_who_uses_it_and_why():
    for premise in internals.PREMISES:
        assert premise.what and premise.why and premise.used_by.startswith("engine."), premise


@pytest.mark.parametrize(
    ("premise", "change", "reported"),
    [
        (  # the SuperNode's idle sleep is no longer 3 s
            internals.SUPERNODE_LOOP,
            {"expect": internals._source_has("time.sleep(30)")},
            "its source no longer holds ['time.sleep(30)']",
        ),
        (  # a name Flower renamed
            internals.PULL_TASK_INPUT,
            {"name": "flwr.supernode.runtime.run_clientapp.pull_task_inputs"},
            "has no 'pull_task_inputs'",
        ),
        (  # a signature Flower changed
            internals.RUNTIME_PUSH,
            {"expect": internals._parameters("client", "context", "status")},
            "fedtui assumes ('client', 'context', 'status')",
        ),
        (  # the ClientApp no longer comes from a FAB installed by `install_from_fab`
            internals.CLIENTAPP_RUN,
            {"expect": internals._source_has("install_app_from_fab(fab.content")},
            "its source no longer holds ['install_app_from_fab(fab.content']",
        ),
        (  # a module Flower moved
            internals.GRID,
            {"name": "flwr.servrapp.Grid"},
            "flwr has no 'servrapp'",
        ),
    ],
)
def test_a_premise_that_no_longer_holds_is_listed_with_why_and_who_uses_it(
    monkeypatch, premise, change, reported
):
    broken = dataclasses.replace(premise, **change)
    premises = tuple(broken if p is premise else p for p in internals.PREMISES)
    monkeypatch.setattr(internals, "PREMISES", premises)

    (line,) = internals.broken_premises()

    assert line.startswith(broken.name) and reported in line
    assert line.endswith(f"(used by {premise.used_by})")


def test_flowers_polling_loop_no_longer_sleeping_through_time_is_caught(monkeypatch):
    monkeypatch.setattr(start_client_internal, "time", object())

    assert internals.SUPERNODE_TIME.problem() == "is no longer the time module"


def test_swapped_puts_flowers_names_back_however_the_block_ends(monkeypatch):
    monkeypatch.setattr(start_client_internal, "time", time)  # put back after the test
    stand_in = object()

    with pytest.raises(RuntimeError), internals.swapped({internals.SUPERNODE_TIME: stand_in}):
        assert start_client_internal.time is stand_in
        raise RuntimeError

    assert start_client_internal.time is time


def test_a_name_inside_a_class_is_swapped_and_put_back_too():
    original = uvicorn.Server.main_loop

    with internals.swapped({internals.UVICORN_LOOP: server_ticks.main_loop}):
        assert uvicorn.Server.main_loop is server_ticks.main_loop

    assert uvicorn.Server.main_loop is original
