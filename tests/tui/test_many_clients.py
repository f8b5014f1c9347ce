"""The monitor with 20 clients, 4 sampled a round: the table scrolls and sorts, the chart draws
the sampled clients' spread (their lines on request), the header counts who trained."""

import contextlib
import dataclasses

import pytest

from engine.core.config import RunConfig
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import live_app
from tui.widgets.clients_table import ClientsTable
from tui.widgets.run_chart import RunChart
from tui.widgets.run_header import RunHeader

SIZE = (120, 40)
SAMPLES = {1: [2, 7, 11, 16], 2: [0, 5, 7, 19], 3: [3, 8, 12, 14]}


@contextlib.asynccontextmanager
async def monitor_of_twenty_clients():
    """The live monitor of a run of 20 clients, 4 a round (a ScriptedRun), once it shows
    round 5: rounds 1-3 of four sampled clients each, round 4 of one, then round 5 sent to
    four more, of which one has trained. Yields the pilot and the run."""
    run = ScriptedRun(
        dataclasses.replace(RunConfig(), name="many", num_clients=20, clients_per_round=4, rounds=5)
    )
    async with live_app(run, clock=None).run_test(size=SIZE) as pilot:
        run.emit("round_done", round=0, eval_loss=8.3, seconds=0.5, eval_seconds=0.5)
        for number, clients in SAMPLES.items():
            losses = [7.5 - number * 0.3 + i * 0.1 for i in range(4)]
            run.play_round(number, 8.0 - number * 0.4, losses, sampled=clients)
        run.play_round(4, 6.5, (6.9,), sampled=[1])
        run.emit("round_started", round=5, clients=4, sampled=[4, 6, 9, 10])
        run.emit(
            "client_round_done", round=5, client=9, train_loss=6.2, examples=32, steps=4, seconds=1
        )
        monitor = pilot.app.screen

        def shown():
            states = monitor.query_one(RunChart)._states
            return monitor.settled and states and 5 in states[0].rounds

        await until(shown)
        yield pilot, run


async def test_the_header_counts_who_trained_and_the_rest_are_idle():
    async with monitor_of_twenty_clients() as (pilot, run):
        header = str(pilot.app.screen.query_one(RunHeader).render())
        assert "round 5/5  1/4 clients trained" in header
        state = pilot.app.screen.query_one(RunChart)._states[0]
        idle = {c.client for c in state.clients.values() if c.state == "idle"}
        assert idle == set(range(20)) - {4, 6, 9, 10}


async def test_the_chart_draws_the_spread_and_a_line_each_on_request():
    async with monitor_of_twenty_clients() as (pilot, run):
        chart = pilot.app.screen.query_one(RunChart)
        legend = chart.legend()
        assert [label for label in legend if label.startswith("clients")] == [
            "clients: max",
            "clients: median",
            "clients: min",
        ]
        assert not any(label.startswith("client ") for label in legend)
        spread = {line.label: line.ys for line in chart.lines()}
        # rounds 1-3: the lowest, middle and highest of four clients' losses
        assert spread["clients: min"][:3] == pytest.approx([7.2, 6.9, 6.6])
        assert spread["clients: median"][:3] == pytest.approx([7.35, 7.05, 6.75])
        assert spread["clients: max"][:3] == pytest.approx([7.5, 7.2, 6.9])

        await pilot.press("i")
        lines = [label for label in chart.legend() if label.startswith("client ")]
        assert lines == [f"client {n}" for n in sorted({1, 9, *sum(SAMPLES.values(), [])})]


async def test_the_clients_table_scrolls_and_sorts_by_state_loss_and_memory():
    async with monitor_of_twenty_clients() as (pilot, run):
        table = pilot.app.screen.query_one(ClientsTable)
        assert table.row_order() == list(range(20))
        assert table.max_scroll_y > 0  # 20 rows do not fit: the table scrolls
        table.focus()
        await pilot.press(*["down"] * 19)
        await until(lambda: table.scroll_y > 0)

        await pilot.press("o")
        assert table.sort_by == "state"
        order = table.row_order()
        assert order[:4] == [4, 6, 9, 10]  # sampled this round ("waiting"), before "idle"
        assert set(order[4:]) == set(range(20)) - {4, 6, 9, 10}

        await pilot.press("o")
        assert table.sort_by == "loss"
        order = table.row_order()
        assert order[0] == 9 and order[-7:] == [4, 6, 10, 13, 15, 17, 18]  # never trained: last
        await pilot.press("o")
        assert table.sort_by == "memory"
        rss = {"3": 5 << 30, "17": 9 << 30, "8": 7 << 30}
        run.emit(
            "gpu_sample",
            devices=[],
            clients={
                c: {"rss_bytes": b, "vram_bytes": None, "device": None, "source": None}
                for c, b in rss.items()
            },
        )
        await until(lambda: table.row_order()[:3] == [17, 8, 3])  # the largest first, live

        await pilot.press("o")
        assert table.sort_by == "client" and table.row_order() == list(range(20))
