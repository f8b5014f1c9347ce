"""The sandbox code_eval runs generated programs in: hostile programs fail, in bounded time,
change nothing outside their folder, leave no process behind, and the run that started them goes
on."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from engine.system import sandbox
from engine.system.sandbox import network_isolation, run_program
from engine.system.write_guard import landlock_abi
from tests.waiting import wait_for

TIMEOUT = 2.0
CEILING = TIMEOUT + 15.0  # generous: a loaded machine still returns well within it
SECRET = "FEDTUI_SECRET_TOKEN"

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
    pytest.mark.timeout(120),  # a sandbox that fails to kill fails the test, not the suite
]


@pytest.fixture(autouse=True)
def sandbox_home(tmp_path, monkeypatch):
    """Every sandbox folder of a test goes under its own tmp_path; afterwards none is left, and
    no process still works in one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    wait_for(lambda: not processes_working_in(tmp_path), timeout=CEILING)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(sandbox.SANDBOX_PREFIX)]


def processes_working_in(folder):
    found = []
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info["cwd"]
        if cwd and cwd.startswith(str(folder)) and process.pid != os.getpid():
            found.append(process)
    return found


def run(source, timeout=TIMEOUT):
    started = time.monotonic()
    result = run_program(source, timeout=timeout)
    assert time.monotonic() - started < CEILING
    return result


def test_a_correct_program_passes_and_its_output_is_kept():
    result = run("print('hello from the sandbox')")
    assert result.passed
    assert result.reason == "passed"
    assert result.output == "hello from the sandbox\n"


def test_a_failing_assertion_fails_with_the_error_as_its_reason():
    result = run("def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4, 'add is wrong'\n")
    assert not result.passed
    assert result.reason == "failed: AssertionError: add is wrong"


def test_the_reason_is_the_exception_the_program_ended_on_whatever_is_printed_after_it():
    printed_after = "import atexit, sys\natexit.register(print, 'goodbye', file=sys.stderr)\n"
    result = run(printed_after + "raise ValueError('the program failed here')\n")
    assert result.reason == "failed: ValueError: the program failed here"


def test_a_program_that_exits_without_an_exception_fails_with_its_last_words():
    result = run("import sys\nsys.exit('no tests found')\n")
    assert result.reason == "failed: no tests found"


def test_an_infinite_loop_is_killed_at_the_timeout():
    result = run("while True:\n    pass\n")
    assert not result.passed
    assert result.reason == f"timed out after {TIMEOUT:g} s"
    assert TIMEOUT <= result.seconds < CEILING


def test_a_fork_bomb_fails_at_the_process_limit_and_leaves_no_process():
    result = run("import os\nwhile True:\n    os.fork()\n")
    assert not result.passed
    assert "BlockingIOError" in result.reason  # refused a process, not merely timed out


def test_a_process_that_leaves_the_session_dies_with_the_program(sandbox_home):
    escaping = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
    result = run(escaping + "time.sleep(600)\n")
    assert not result.passed  # timed out; the fixture checks that the escaped child is gone


def test_a_64_gb_allocation_fails():
    result = run("b = bytearray(64 << 30)\n")
    assert not result.passed
    assert "MemoryError" in result.reason


def test_an_allocation_over_the_memory_limit_fails_though_the_machine_could_give_it():
    result = run_program("b = bytearray(1 << 30)\n", timeout=TIMEOUT, memory_bytes=256 << 20)
    assert not result.passed
    assert "MemoryError" in result.reason


def test_printing_forever_is_bounded():
    result = run("while True:\n    print('x' * 1000)\n")
    assert not result.passed
    assert len(result.output) <= sandbox.OUTPUT_TAIL_BYTES


@pytest.mark.skipif(
    landlock_abi() == 0 and os.geteuid() != 0,
    reason="no Landlock and not root: programs may write where this user may (see sandbox)",
)
def test_a_write_outside_its_folder_is_refused(sandbox_home):
    result = run("open('../outside', 'w').write('escaped')\n")
    assert not result.passed
    assert "PermissionError" in result.reason
    assert not list(sandbox_home.rglob("outside"))


@pytest.mark.skipif(landlock_abi() == 0, reason="this kernel has no Landlock")
def test_a_write_to_a_folder_anyone_may_write_is_refused_too(sandbox_home):
    escape = Path("/dev/shm") / f"fedtui-sandbox-escape-{uuid.uuid4().hex}"
    try:
        result = run(f"open({str(escape)!r}, 'w').write('escaped')\n")
        assert not result.passed and "PermissionError" in result.reason
        assert not escape.exists()
    finally:
        escape.unlink(missing_ok=True)


@pytest.mark.skipif(
    network_isolation() is not None and os.geteuid() != 0,
    reason="no PID namespace and the same user: the program could signal this process",
)
def test_killing_its_parent_and_everyone_leaves_the_run_and_its_children_alive():
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        result = run(
            "import contextlib, os, signal, time\n"
            "os.kill(os.getppid(), signal.SIGKILL)\n"
            "with contextlib.suppress(OSError):\n"
            "    os.kill(-1, signal.SIGKILL)\n"
            "time.sleep(600)\n"
        )
        assert not result.passed
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.skipif(network_isolation() is not None, reason=str(network_isolation()))
def test_a_tcp_connect_to_this_machine_fails_and_reaches_nothing():
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        port = listener.getsockname()[1]
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\n")
        assert not result.passed
        assert "Network is unreachable" in result.reason
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # a completed handshake would wait here, accepted or not


def test_the_environment_is_empty(monkeypatch):
    monkeypatch.setenv(SECRET, "s3cret-value")
    result = run(
        "import os, sys\n"
        "print(dict(os.environ))\n"
        f"sys.exit(0 if os.environ.get({SECRET!r}) else 1)\n"
    )
    assert not result.passed
    assert "s3cret-value" not in result.output
    assert "FEDTUI" not in result.output


def test_stdin_is_closed():
    result = run("import sys\nassert sys.stdin is None or sys.stdin.read() == ''\n")
    assert result.passed


def test_network_isolation_says_why_when_missing():
    warning = network_isolation()
    assert warning is None or warning.startswith(
        "code_eval runs programs without network isolation: "
    )
    assert network_isolation() is warning  # found once


def test_a_program_killed_by_a_signal_says_which():
    result = run("import ctypes\nctypes.string_at(0)\n")  # a segmentation fault
    assert not result.passed
    assert result.reason == "killed by signal 11 (SIGSEGV)"


def test_bad_limits_are_a_programming_error():
    with pytest.raises(ValueError):
        run_program("pass", timeout=0)
    with pytest.raises(ValueError):
        run_program("pass", timeout=1, memory_bytes=-1)


def test_a_program_dies_with_the_run_that_started_it(sandbox_home):
    program = "import time\nopen('started', 'w').close()\ntime.sleep(600)\n"
    run_it = (
        f"from engine.system.sandbox import run_program\nrun_program({program!r}, timeout=600)\n"
    )
    environment = {**os.environ, "TMPDIR": str(sandbox_home)}
    the_run = subprocess.Popen([sys.executable, "-c", run_it], env=environment)
    try:
        wait_for(lambda: list(sandbox_home.glob("*/program/started")), timeout=CEILING)
    finally:
        the_run.kill()
        the_run.wait()
    wait_for(lambda: not processes_working_in(sandbox_home), timeout=CEILING)
    for left_behind in sandbox_home.glob(sandbox.SANDBOX_PREFIX + "*"):
        shutil.rmtree(left_behind)  # a killed run cannot remove its folder; its program is gone
