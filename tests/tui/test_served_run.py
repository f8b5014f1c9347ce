"""A served run (`fedtui serve`) as the monitor shows it: who is missing, who joined from where,
and the remote clients at work though they send no steps."""

from engine.core import events as ev
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import live_app
from tui.widgets.clients_table import ClientsTable

SIZE = (140, 40)


def cell(app, client: int, column: str) -> str:
    table = app.screen.query_one(ClientsTable)
    if str(client) not in table.rows or column not in table.columns:
        return ""
    return table.get_cell(str(client), column).plain


def header(app) -> str:
    return str(app.screen.query_one("#header").render())


async def test_missing_clients_then_where_each_joined_from_then_their_rounds():
    scripted = ScriptedRun()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE):
        scripted.emit(ev.WAITING_FOR_CLIENTS, joined=[], missing=[0, 1], seconds_left=600)
        await until(lambda: cell(app, 1, "state") == "missing")
        assert "waiting for clients to join (missing: 0, 1)" in header(app)
        assert "host" not in app.screen.query_one(ClientsTable).columns  # none on another host yet

        scripted.emit(ev.CLIENT_JOINED, client=0, node_id=7, address="10.213.0.2", host="lab-a")
        scripted.emit(ev.WAITING_FOR_CLIENTS, joined=[0], missing=[1], seconds_left=590)
        await until(lambda: cell(app, 0, "host") == "10.213.0.2")
        assert (cell(app, 0, "state"), cell(app, 1, "state"), cell(app, 1, "host")) == (
            "joined",
            "missing",
            "-",
        )

        scripted.emit(ev.CLIENT_JOINED, client=1, node_id=8, address="10.213.0.3", host="lab-b")
        scripted.emit(ev.ROUND_DONE, round=0, eval_loss=8.3)
        scripted.emit(ev.ROUND_STARTED, round=1, clients=2, sampled=[0, 1])
        await until(lambda: cell(app, 1, "state") == "training")  # no steps come from afar
        assert cell(app, 1, "host") == "10.213.0.3"

        scripted.emit(ev.CLIENT_ROUND_DONE, round=1, client=1, train_loss=7.9, examples=32,
                      steps=4, seconds=3.0, peak_rss_bytes=3 * 2**30)  # fmt: skip
        await until(lambda: cell(app, 1, "last") == "7.9000")
        assert cell(app, 1, "memory") != "-"  # the reply's peak: no sampler sees that host
        assert cell(app, 0, "state") == "training"
