import functools
import os
import subprocess
import sys

import psutil

from engine.system import processes
from engine.system.processes import ProcessTable
from tests.waiting import wait_for

# A parent that starts a child in a new session (as Flower's SuperExec does), then waits.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
time.sleep(120)
"""


def start_parent(table, tmp_path, role, **options):
    """PARENT, started by `table` as `role` with `options` (client, nice)."""
    return table.spawn(
        role,
        [sys.executable, "-c", PARENT],
        env=dict(os.environ),
        log_path=tmp_path / "parent.log",
        **options,
    )


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_descendants_in_new_sessions_are_tracked_and_ended_by_pid(tmp_path):
    started, exited = [], []
    table = ProcessTable(started.append, exited.append)
    parent = start_parent(table, tmp_path, "supernode", client=1)
    wait_for(lambda: (table.scan(), len(table.alive()) == 2)[1])
    child = next(p for p in table.alive() if p.pid != parent.pid)
    assert child.client == 1
    # A scan can find the forked child before it has called setsid().
    wait_for(lambda: os.getsid(child.pid) != os.getsid(parent.pid))

    table.terminate_all(grace_s=2)
    assert table.alive() == []
    assert gone(parent.pid) and gone(child.pid)
    assert {p.pid for p in exited} == {parent.pid, child.pid}


def test_a_process_started_nicer_runs_nicer_as_a_batch_job_and_so_does_what_it_starts(tmp_path):
    table = ProcessTable(lambda process: None, lambda process: None)
    parent = start_parent(table, tmp_path, "superlink", nice=3)
    try:
        wait_for(lambda: (table.scan(), len(table.alive()) == 2)[1])
        niceness = {psutil.Process(p.pid).nice() for p in table.alive()}
        assert niceness == {min(os.nice(0) + 3, 19)} and parent in table.alive()
        assert {os.sched_getscheduler(p.pid) for p in table.alive()} == {os.SCHED_BATCH}
    finally:
        table.terminate_all(grace_s=2)


def test_a_forked_copy_of_a_flower_process_is_not_taken_for_a_second_one(tmp_path):
    """Between fork and exec (or with no exec) a child's command line is its parent's: a
    ServerApp's helper caught in that moment must not be recorded as another ServerApp."""
    serverapp = tmp_path / "flwr-serverapp"
    serverapp.write_text(
        "import os, time\nif os.fork() == 0:\n    time.sleep(120)\ntime.sleep(120)\n"
    )
    started = []
    table = ProcessTable(started.append, lambda process: None)
    table.spawn(
        "serverapp",
        [sys.executable, str(serverapp)],
        env=dict(os.environ),
        log_path=tmp_path / "serverapp.log",
    )
    try:
        wait_for(lambda: (table.scan(), len(started) == 2)[1])
        assert [p.role for p in started] == ["serverapp", processes.FORKED]
    finally:
        table.terminate_all(grace_s=2)


def test_a_child_caught_before_it_starts_its_program_is_named_by_that_program(tmp_path):
    """A scan that finds a SuperExec's new child between fork and exec (a moment a loaded
    machine stretches) looks at it again on the next scan, when it runs its own program."""
    go = tmp_path / "go"
    clientapp = tmp_path / "flwr-clientapp"
    clientapp.write_text("import time\ntime.sleep(120)\n")
    superexec = tmp_path / "flower-superexec"
    superexec.write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        f"    while not os.path.exists({str(go)!r}):\n"
        "        time.sleep(0.01)\n"
        f"    os.execv(sys.executable, [sys.executable, {str(clientapp)!r}])\n"
        "time.sleep(120)\n"
    )
    started = []
    table = ProcessTable(started.append, lambda process: None)
    parent = table.spawn(
        "superexec",
        [sys.executable, str(superexec)],
        env=dict(os.environ),
        log_path=tmp_path / "superexec.log",
    )
    try:
        (child,) = wait_for(lambda: psutil.Process(parent.pid).children(), timeout=30.0)
        table.scan()  # the child still runs its parent's program
        assert [p.role for p in started] == ["superexec"]
        go.touch()
        wait_for(lambda: str(clientapp) in child.cmdline(), timeout=30.0)
        table.scan()
        assert [p.role for p in started] == ["superexec", "clientapp"]
    finally:
        table.terminate_all(grace_s=2)


def test_an_orphan_left_by_a_dead_parent_is_still_ended(tmp_path):
    table = ProcessTable(lambda p: None, lambda p: None)
    parent = start_parent(table, tmp_path, "supernode", client=0)
    wait_for(lambda: (table.scan(), len(table.alive()) == 2)[1])
    orphan = next(p for p in table.alive() if p.pid != parent.pid)
    parent.popen.kill()
    parent.popen.wait()
    table.scan()
    assert [p.pid for p in table.alive()] == [orphan.pid]
    table.terminate_all(grace_s=2)
    assert gone(orphan.pid)


# Says so once SIGTERM is ignored: a SIGTERM before that would end it (-15), not test the kill.
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(120)
"""


def test_a_process_ignoring_sigterm_is_killed(tmp_path):
    table = ProcessTable(lambda p: None, lambda p: None)
    log = tmp_path / "stubborn.log"
    stubborn = table.spawn(
        "superlink", [sys.executable, "-c", STUBBORN], env=dict(os.environ), log_path=log
    )
    wait_for(lambda: "ignoring SIGTERM" in log.read_text(), timeout=30)
    table.terminate_all(grace_s=0.5)
    assert gone(stubborn.pid)
    assert stubborn.returncode == -9


def test_a_child_whose_parent_died_before_its_death_signal_was_armed_ends_itself():
    """The window between fork and prctl: a parent killed there sends no signal, so the child
    checks that its parent is still the process that forked it (here: a PID that is not)."""
    not_the_parent = os.getpid() + 1_000_000
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=functools.partial(processes.die_with_parent, not_the_parent),
    )
    assert child.wait(timeout=60) == processes.ORPHANED_EXIT_CODE


def test_a_child_of_a_live_parent_runs():
    child = subprocess.Popen(
        [sys.executable, "-c", "raise SystemExit(3)"],
        preexec_fn=functools.partial(processes.die_with_parent, os.getpid()),
    )
    assert child.wait(timeout=60) == 3
