"""A run folder may come from anyone: whatever a crafted one holds (a billion clients, a time of
NaN or 1e300, a run_started without its config, a 100 MB line, nesting a thousand deep, wrong
types, sweep.json and config.toml nonsense), `fedtui runs`, `export` and a replay read it
without a crash, a hang or a memory blow-up: bad lines are skipped with one warning, an unreadable
run exits 2 with one line."""

import asyncio
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.core.errors import RunFolderError
from engine.record.run_folders import read_run, sample_runs_folder
from tui.app import replay_app
from tui.cli import main

SAMPLE = sample_runs_folder() / "fedavg"
SWEEP = sample_runs_folder() / "fedprox-mu-sweep" / "sweep.json"
LINES = (SAMPLE / "events.jsonl").read_text().splitlines()


# A child started from this (large) test process inherits its peak RSS in ru_maxrss: Linux
# records the old address space's high-water mark at exec. A small interpreter in between starts
# the measured child from an address space of its own.
PEAK_OF_CHILD = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))  # Linux counts KiB
sys.exit(os.waitstatus_to_exitcode(status))
"""


def deep(levels):
    return json.loads("[" * levels + "]" * levels)


HOSTILE = (
    st.sampled_from(
        [10**9, 1e9, -1, 0, 10**30, 1e300, float("nan"), float("inf"), "x", "", [], {}, None, True]
        + [[1, "a"], {"0": "x"}, deep(40), deep(500)]
    )
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
)


@st.composite
def mutation(draw):
    """One change to the record: a value set somewhere in a line, a field dropped, a line replaced
    by bytes, a line repeated."""
    kind = draw(st.sampled_from(["set", "set", "set", "drop", "raw", "repeat"]))
    line = draw(st.integers(0, len(LINES) - 1))
    if kind == "raw":
        return kind, line, draw(st.binary(max_size=40) | st.sampled_from([b"NaN", b"{" * 5000]))
    return kind, line, draw(st.lists(st.integers(0, 50), min_size=1, max_size=4)), draw(HOSTILE)


def mutated(lines, change):
    kind, number, *rest = change
    if kind == "raw":
        return lines[:number] + [rest[0].decode("latin-1")] + lines[number + 1 :]
    if kind == "repeat":
        return lines[:number] + [lines[number]] * 50 + lines[number:]
    try:
        event = json.loads(lines[number])
    except ValueError:  # replaced by bytes already
        return lines
    if not isinstance(event, dict):
        return lines
    target, path, value = event, rest[0], rest[1]
    for index in path[:-1]:  # walk into the line's tables and lists
        children = list(target) if isinstance(target, dict) else range(len(target))
        child = target[children[index % len(children)]] if children else None
        if not isinstance(child, (dict, list)):
            break
        target = child
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    if keys:
        key = keys[path[-1] % len(keys)]
        if kind == "drop" and isinstance(target, dict):
            del target[key]
        else:
            target[key] = value
    return lines[:number] + [json.dumps(event)] + lines[number + 1 :]


CORPUS = st.fixed_dictionaries(
    {
        "changes": st.lists(mutation(), min_size=1, max_size=4),
        "sweep": st.sampled_from(["real", "none"])
        | st.recursive(st.none() | st.integers() | st.text(max_size=4), st.lists)
        | st.builds(lambda m: {**json.loads(SWEEP.read_text()), "members": m}, HOSTILE),
        "config_toml": st.binary(max_size=60),
    }
)


@contextlib.contextmanager
def crafted(corpus):
    """A copy of a real recorded run, changed, inside a sweep folder (its sweep.json too)."""
    with tempfile.TemporaryDirectory() as root:
        sweep = Path(root) / "sweep"
        run = sweep / "proximal_mu=0.01"
        shutil.copytree(SAMPLE, run)
        lines = LINES
        for change in corpus["changes"]:
            lines = mutated(lines, change)
        (run / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="latin-1")
        (run / "config.toml").write_bytes(corpus["config_toml"])
        if corpus["sweep"] == "real":
            shutil.copy(SWEEP, sweep / "sweep.json")
        elif corpus["sweep"] != "none":
            (sweep / "sweep.json").write_text(json.dumps(corpus["sweep"]))
        yield Path(root), sweep, run


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def told_in_lines(code, err):
    """Exit 0, or 2 for an unreadable run; stderr a few `fedtui:` lines, no traceback."""
    assert code in (0, 2), err
    assert "Traceback" not in err
    assert all(line.startswith("fedtui: ") for line in err.splitlines()), err


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CORPUS)
def test_runs_and_export_read_any_crafted_run_folder_in_one_line_or_a_warning(corpus):
    with crafted(corpus) as (root, sweep, run):
        for argv in (
            ["runs", str(root)],
            ["runs", str(sweep)],
            ["export", str(run)],
            ["export", str(run), "--format", "json"],
            ["export", str(sweep)],
        ):
            told_in_lines(*cli(*argv))


async def replay_to_the_end(run):
    app = replay_app([(run.name, read_run(run).events)], folder=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("end", "2", "5")
        await pilot.pause()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CORPUS)
def test_a_replay_shows_any_crafted_run_folder_to_its_end(corpus):
    with crafted(corpus) as (_, _, run):
        try:
            read_run(run)
        except RunFolderError:
            return  # the CLI says so in one line (above)
        asyncio.run(replay_to_the_end(run))


def test_a_100_mb_line_is_skipped_without_being_read_into_memory(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SAMPLE, run)
    padding = ",".join(["0.5"] * 25_000_000)  # 100 MB of numbers: ~1 GB as Python floats
    with open(run / "events.jsonl", "a") as record:
        record.write(f'{{"v":1,"t":1.0,"type":"notice","message":"x","pad":[{padding}]}}\n')
        record.write(LINES[-1] + "\n")

    out, err, peak = tmp_path / "out", tmp_path / "err", tmp_path / "peak"
    export_command = [sys.executable, "-m", "tui.cli", "export", str(run)]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        export = subprocess.run(
            [sys.executable, "-c", PEAK_OF_CHILD, peak, *export_command],
            stdout=stdout,
            stderr=stderr,
        )
    peak_bytes = int(peak.read_text())

    assert export.returncode == 0, err.read_text()
    assert peak_bytes < 1 << 30, f"peak RSS {peak_bytes >> 20} MiB"
    warning = err.read_text()
    assert warning.count("\n") == 1 and "longer than 1 MiB: not read" in warning
    assert len(out.read_text().splitlines()) == 1 + 9  # the header, rounds 0-8
