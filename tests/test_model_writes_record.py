"""What the global model writes, as a run records it and every view reads it: code_eval's pass@k
and the generation prompts' completions per round, each round's scheduled learning rate."""

import csv
import dataclasses
import io

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.describe import describe
from engine.record.run_folders import export
from engine.record.run_state import RunState
from tui.chart_lines import LineOptions
from tui.chart_views import VIEWS_BY_KEY
from tui.widgets.run_header import learning_rate_text, pass_at_text

COSINE = dataclasses.replace(
    RunConfig(), rounds=2, lr_schedule="cosine", learning_rate=1e-3, min_learning_rate=1e-5
)


def scored_run() -> RunState:
    events = [ev.make(ev.RUN_STARTED, run_id="r", config=COSINE.to_dict())]
    for number, (pass_at_1, rate) in enumerate([(0.0, None), (0.25, 1e-3), (0.125, 1e-5)]):
        if number:
            events.append(ev.make(ev.ROUND_STARTED, round=number, learning_rate=rate))
        events.append(ev.make(ev.ROUND_DONE, round=number, eval_loss=8.0 - number))
        events.append(
            ev.make(
                ev.CODE_EVAL,
                round=number,
                pass_at={"1": pass_at_1, "2": min(1.0, 2 * pass_at_1)},
                problems=8,
                generation_seconds=3.0,
                execution_seconds=0.5,
            )
        )
        events.append(
            ev.make(
                ev.GENERATED,
                round=number,
                samples=[{"prompt": "def f():\n", "completion": f"    return {number}\n"}],
            )
        )
    return RunState.from_events(events)


def test_each_round_holds_its_pass_at_k_its_completions_and_its_learning_rate():
    state = scored_run()

    assert state.rounds[1].pass_at == {1: 0.25, 2: 0.5}
    assert state.rounds[2].samples == [("def f():\n", "    return 2\n")]
    assert state.rounds[2].learning_rate == 1e-5
    assert state.rounds[0].code_eval_seconds == 3.5


def test_export_gives_pass_at_k_and_the_learning_rate_each_round_trained_with():
    rows = list(csv.DictReader(io.StringIO(export(scored_run(), "csv"))))

    assert [row["pass@1"] for row in rows] == ["0.0", "0.25", "0.125"]
    assert [row["pass@2"] for row in rows] == ["0.0", "0.5", "0.25"]
    # round 0 trains nothing: it says the configured rate
    assert [row["learning_rate"] for row in rows] == ["0.001", "0.001", "1e-05"]


def test_a_constant_learning_rate_adds_no_column():
    state = RunState.from_events(
        [
            ev.make(ev.RUN_STARTED, run_id="r", config=RunConfig().to_dict()),
            ev.make(ev.ROUND_STARTED, round=1, learning_rate=1e-3),
            ev.make(ev.ROUND_DONE, round=1, eval_loss=7.0),
        ]
    )
    assert "learning_rate" not in export(state, "csv").splitlines()[0].split(",")


def test_the_pass_at_k_view_draws_a_line_per_k_and_one_per_run_overlaid():
    view = VIEWS_BY_KEY["pass_at"]
    state = scored_run()

    alone = view.lines([state], ["r"], LineOptions())
    overlaid = view.lines([state, state], ["a", "b"], LineOptions())

    assert [(line.label, line.ys) for line in alone] == [
        ("pass@1", [0.0, 0.25, 0.125]),
        ("pass@2", [0.0, 0.5, 0.25]),
    ]
    assert [line.label for line in overlaid] == ["a: pass@1", "b: pass@1"]


def test_the_header_says_the_latest_pass_at_1_its_best_and_the_rounds_learning_rate():
    state = scored_run()

    assert pass_at_text(state) == "  pass@1 0.125 (best 0.250 @ round 1)"
    assert learning_rate_text(state) == "lr 1e-05 (cosine to 1e-05)"
    assert pass_at_text(RunState()) == ""


def test_the_event_log_tells_the_scores_and_the_rounds_learning_rate():
    code = ev.make(
        ev.CODE_EVAL, round=3, pass_at={"1": 0.125}, problems=8, generation_seconds=12.34,
        execution_seconds=2.0,
    )  # fmt: skip
    started = ev.make(ev.ROUND_STARTED, round=3, clients=2, learning_rate=0.00095)

    assert describe(code) == (
        "round 3 code eval: pass@1 0.125 on 8 problems (writing 12.3 s, testing 2.0 s)"
    )
    assert describe(started) == "round 3 started with 2 clients, learning rate 0.00095"


def test_a_recorded_score_that_is_not_a_number_is_left_out():
    state = RunState.from_events(
        [ev.make(ev.CODE_EVAL, round=1, pass_at={"1": "all", "x": 0.5, "2": 0.5})]
    )
    assert state.rounds[1].pass_at == {2: 0.5}
