"""The field's workload end to end: a LoRA run on instruction data, learning only the responses,
a fixed number of local steps a round, a cosine learning rate, and pass@k measured after every
round on a small problem set, with what the model wrote recorded and exported."""

import csv
import io
import json
import math

import pytest

from engine.core import events as ev
from engine.record.run_folders import export, read_run
from tests.e2e.test_real_runs import finish, of_type, start

pytestmark = pytest.mark.e2e

# Problems in HumanEval's schema, easy enough that a canonical body is one line.
PROBLEMS = [
    {
        "task_id": f"Tiny/{index}",
        "prompt": f'def {name}(a, b):\n    """{doc}"""\n',
        "test": f"def check(candidate):\n    assert candidate(2, 3) == {result}\n",
        "entry_point": name,
    }
    for index, (name, doc, result) in enumerate(
        [
            ("add", "The sum of a and b.", 5),
            ("mul", "The product of a and b.", 6),
            ("sub", "a minus b.", -1),
        ]
    )
]
INSTRUCTIONS = [
    {"instruction": f"Write a function that returns {a} {op} b.", "input": "" if i % 2 else "b=3",
     "output": f"def f(b):\n    return {a} {op} b\n"}
    for i, (a, op) in enumerate((a, op) for a in range(24) for op in "+-*")
]  # fmt: skip


def test_an_instruction_run_with_steps_cosine_and_pass_at_k_records_every_round(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    dataset = tmp_path / "code-instructions.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in INSTRUCTIONS))
    rounds, steps = 2, 3
    controller, _ = start(
        tmp_path,
        [
            f"rounds={rounds}", "backend=simulation", "lora.enabled=true",
            f"dataset={dataset}", "data_format=instruction", "loss_on=completion",
            f"local_steps={steps}", "lr_schedule=cosine", "learning_rate=1e-3",
            "min_learning_rate=1e-4", "samples_per_client=24", "eval_samples=16",
            "seq_len=96", "code_eval.enabled=true", f"code_eval.benchmark={problems}",
            "code_eval.max_new_tokens=16", "code_eval.samples_per_problem=2",
            "code_eval.temperature=0.8", "generation_max_new_tokens=8",
        ],
    )  # fmt: skip
    status, events = finish(controller)

    assert status == "completed"
    scored = {e["round"]: e for e in of_type(events, ev.CODE_EVAL)}
    assert sorted(scored) == [0, 1, 2]
    for event in scored.values():
        assert set(event["pass_at"]) == {"1", "2"} and event["problems"] == len(PROBLEMS)
        assert all(0.0 <= value <= 1.0 for value in event["pass_at"].values())
    written = {e["round"]: e["samples"] for e in of_type(events, ev.GENERATED)}
    assert sorted(written) == [0, 1, 2]
    assert [s["prompt"] for s in written[2]] == read_run(controller.run_dir).state.config[
        "generation_prompts"
    ]
    for event in of_type(events, ev.CLIENT_ROUND_DONE):
        assert event["steps"] == steps  # an optimizer step a batch: exactly local_steps
    rates = {e["round"]: e["learning_rate"] for e in of_type(events, ev.ROUND_STARTED)}
    assert rates[1] == pytest.approx(1e-3) and rates[2] == pytest.approx(1e-4)
    (summary,) = of_type(events, ev.PARTITION_SUMMARY)
    assert all(client["samples"] == 24 for client in summary["clients"])

    rows = list(csv.DictReader(io.StringIO(export(read_run(controller.run_dir).state, "csv"))))
    assert [row["round"] for row in rows] == ["0", "1", "2"]
    for row in rows:
        assert math.isclose(float(row["pass@1"]), scored[int(row["round"])]["pass_at"]["1"])
    assert [float(row["learning_rate"]) for row in rows[1:]] == pytest.approx([1e-3, 1e-4])
