"""One untrusted Python program, run where it can do as little harm as this machine allows.

Generated code is hostile until proven otherwise: a completion may loop forever, allocate 64 GB,
fork without end, write outside its folder, signal the run that started it, read the run's
secrets from its environment or talk to the network. `run_program` guards against each:

- its own process, in a fresh empty folder inside a private (0700) parent, removed afterwards;
  an empty environment and a closed stdin;
- resource limits set in the child before it execs: CPU seconds, address space, file size, no
  core dumps; and processes, set by prlimit right before the interpreter (see `_run` for why);
- its own session, whose process group is SIGKILLed at the wall-clock timeout and always after
  the program ends; and the kernel's parent-death signal, so that it dies with the run;
- where util-linux's `unshare` works: its own PID namespace (every descendant dies with it and it
  sees no other process), network namespace (loopback down, every connect fails) and /proc;
- Landlock (engine.system.write_guard), applied in the program's interpreter before the program:
  whoever it runs as, it creates, changes or removes files only in its own folder;
- run as root: dropped to `nobody` inside the namespaces (root would ignore the process limit);
  its folder alone belongs to nobody.
  Not root: a user namespace makes the namespaces possible without privileges. nobody may be
  unable to read this process's interpreter (a pyenv build under /root): programs then run on a
  system interpreter of the same minor version, found by trying.

Limits, honestly: a program still uses up to its CPU and memory limits (a fork bomb may hold up to
`max_processes` processes, each up to `memory_bytes`, until the timeout); `nobody` may still write
only where Landlock lets it (a kernel without Landlock: wherever the world may, /tmp and
/dev/shm) and read what the world may; the process limit counts
every process of `nobody` on the machine, so a fork bomb can make a program that another worker
runs at the same moment fail to fork (it still starts). Not root, the program runs as the user
itself inside its user namespace: without Landlock, the filesystem is guarded only by that
user's own permissions.
Where namespaces are unavailable (`network_isolation()` then says why) programs run as plain
processes with the same limits: they reach the network and can signal the user's other
processes. A run killed mid-program leaves the program's temporary folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.core.errors import FedtuiError
from engine.system import write_guard
from engine.system.processes import die_with_parent

SANDBOX_PREFIX = "fedtui-sandbox-"  # of each program's private parent folder, in the temp dir
OUTPUT_TAIL_BYTES = 64 << 10
REASON_CHARS = 200
# `python program.py` (and runpy) open the script by its absolute path, through the private
# parent that nobody may not enter; this opens it relative to the working folder, as __main__.
# Before it, Landlock (engine.system.write_guard, its source run as it stands) confines every
# write to the working folder, whoever the program runs as. The program's own process writes the
# exception it ended on to the descriptor named by argv[1]: its processes share one stderr, where
# a forked child's traceback may come last.
_RUN_PROGRAM = Path(write_guard.__file__).read_text(encoding="utf-8") + (
    "\nrestrict_writes_to('.')\n"
    "import os, sys\n"
    "reason_fd, program_pid, sys.argv = int(sys.argv[1]), os.getpid(), ['program.py']\n"
    "try:\n"
    "    source = open('program.py', encoding='utf-8').read()\n"
    "    exec(compile(source, 'program.py', 'exec'), "
    "{'__name__': '__main__', '__file__': 'program.py'})\n"
    "except Exception as error:\n"
    "    if os.getpid() == program_pid:\n"
    "        text = str(error)\n"
    "        os.write(reason_fd, (type(error).__name__ + (': ' + text if text else '')).encode())\n"
    "    raise\n"
)


class SandboxUnavailable(FedtuiError):
    """No interpreter this machine has can run a program as the sandbox's user."""


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # exited with code 0 within the time
    reason: str  # "passed", "failed: <its exception>", "timed out after 3 s", ...
    seconds: float
    output: str = ""  # the tail of what it printed to stdout


@dataclass(frozen=True)
class _Launch:
    """How programs start on this machine, found once by trying."""

    prefix: tuple[str, ...]  # argv before the interpreter: unshare, setpriv
    prlimit: str | None  # util-linux's prlimit, or None to set the process limit before exec
    interpreter: str
    owner: tuple[int, int] | None  # (uid, gid) the program's folder is given to, when dropping
    isolation_warning: str | None


def run_program(
    source: str,
    *,
    timeout: float,
    memory_bytes: int = 1 << 30,
    max_processes: int = 32,
    max_file_bytes: int = 10 << 20,
) -> SandboxResult:
    """Run `source` as program.py, the `__main__` of `python -I -S`, in the sandbox and say
    whether it passed: exit code 0 within `timeout` wall-clock seconds. Never raises on what the
    program does; raises SandboxUnavailable when no interpreter here can run it at all."""
    if timeout <= 0 or memory_bytes <= 0 or max_processes <= 0 or max_file_bytes <= 0:
        raise ValueError("timeout and every limit must be positive")
    limits = _Limits(timeout, memory_bytes, max_processes, max_file_bytes)
    return _run(_launch(), source, limits)


def network_isolation() -> str | None:
    """None when programs get their own network namespace here, else the warning to show."""
    return _launch().isolation_warning


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_bytes: int
    max_processes: int
    max_file_bytes: int

    def apply(self, *, processes: bool) -> None:
        """In the child between fork and exec (`preexec_fn`): only setrlimit, nothing that locks."""
        cpu_seconds = math.ceil(self.timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_file_bytes, self.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))


def _run(launch: _Launch, source: str, limits: _Limits) -> SandboxResult:
    parent = Path(tempfile.mkdtemp(prefix=SANDBOX_PREFIX))  # 0700, ours
    try:
        folder = parent / "program"
        folder.mkdir(mode=0o700)
        (folder / "program.py").write_text(source, encoding="utf-8")
        if launch.owner is not None:
            os.chown(folder, *launch.owner)
        # The process limit is set by prlimit, right before the interpreter, where it can: the
        # kernel counts processes per user, and set earlier it would count all of the user's
        # processes in creating the user namespace, and all of nobody's in dropping to nobody
        # (each refused over the limit).
        nproc = f"--nproc={limits.max_processes}:{limits.max_processes}"
        late_limits = (launch.prlimit, nproc, "--") if launch.prlimit else ()
        # Output goes to files outside the program's folder: a program that prints forever fills
        # a file up to its size limit instead of a pipe nobody drains.
        with (
            open(parent / "stdout", "w+b") as stdout,
            open(parent / "stderr", "w+b") as stderr,
            open(parent / "reason", "w+b") as reported,
        ):
            program = ("-I", "-S", "-c", _RUN_PROGRAM, str(reported.fileno()))
            argv = [*launch.prefix, *late_limits, launch.interpreter, *program]
            started = time.monotonic()
            process = subprocess.Popen(
                argv,
                cwd=folder,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
                pass_fds=(reported.fileno(),),
                preexec_fn=functools.partial(_in_child, limits, not launch.prlimit, os.getpid()),
            )
            try:
                ended = _ended_within(process.pid, limits.timeout)
            finally:
                _kill_all(process.pid)
                returncode = process.wait()
            seconds = time.monotonic() - started
            output, errors = _tail(stdout), _tail(stderr)
            reported.seek(0)
            error = reported.read(REASON_CHARS).decode("utf-8", errors="replace")
    finally:
        _remove(parent)
    if not ended:
        return SandboxResult(False, f"timed out after {limits.timeout:g} s", seconds, output)
    return SandboxResult(returncode == 0, _reason(returncode, error, errors), seconds, output)


def _in_child(limits: _Limits, processes: bool, parent_pid: int) -> None:
    """Between fork and exec: the limits, and death with the thread that runs the program (a
    killed run leaves no program behind; setpriv's --pdeathsig carries it past the drop)."""
    die_with_parent(parent_pid)
    limits.apply(processes=processes)


def _ended_within(pid: int, timeout: float) -> bool:
    """Whether the child `pid` ended within `timeout` seconds; it is left unreaped, so that its
    PID (its process group's ID) cannot be reused before the group is killed."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # a kernel before 5.3
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.01)
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)


def _kill_all(pid: int) -> None:
    """SIGKILL what `pid` started, then its process group. Its children first: the PID
    namespace's first process takes the whole namespace with it, even when it left the group
    (setsid) and when dropping to nobody cleared the parent-death signal `--kill-child` set."""
    for descendant in _descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(descendant, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, parents before their children (from /proc, as psutil would,
    but without it: the sandbox is also run by interpreters without the project's packages)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop(0)
        for children_file in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children = [int(child) for child in children_file.read_text().split()]
                found.extend(children)
                pending.extend(children)
    return found


def _tail(file: BinaryIO) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - OUTPUT_TAIL_BYTES))
    return file.read().decode("utf-8", errors="replace")


def _reason(returncode: int, error: str, errors: str) -> str:
    """Why a program failed: its signal, the exception its own process reported, or else (an
    exit without an exception: sys.exit, os._exit) the last line of its stderr."""
    if returncode == 0:
        return "passed"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    if error.strip():
        return f"failed: {error.strip()}"
    lines = [line.strip() for line in errors.splitlines() if line.strip()]
    if not lines:
        return f"failed: exit code {returncode}"
    return f"failed: {lines[-1][:REASON_CHARS]}"


def _remove(parent: Path) -> None:
    """Remove the parent folder, whatever modes the program left on what it wrote."""

    def make_writable_and_retry(
        function: Callable[[str], object], path: str, _error: object
    ) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
        with contextlib.suppress(OSError):
            function(path)

    shutil.rmtree(parent, onerror=make_writable_and_retry)


# How programs start here, found by trying once.

_PROBE = (
    "import json, os, sys\n"
    "print(json.dumps({'version': sys.version, 'net': os.readlink('/proc/self/ns/net')}))\n"
)
_PROBE_LIMITS = _Limits(
    timeout=20.0, memory_bytes=1 << 30, max_processes=32, max_file_bytes=1 << 20
)
_ISOLATION_WARNING = "code_eval runs programs without network isolation: "


@functools.cache
def _launch() -> _Launch:
    """The first way to start programs that works here: in namespaces, else as plain processes
    (with the warning that says why)."""
    unshare, setpriv, prlimit = (shutil.which(name) for name in ("unshare", "setpriv", "prlimit"))
    namespaces: tuple[str, ...] = ("--fork", "--pid", "--net", "--kill-child", "--mount-proc")
    owner: tuple[int, int] | None = None
    drop: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if setpriv is None:
            raise SandboxUnavailable("code_eval needs util-linux's setpriv to run programs as root")
        nobody = pwd.getpwnam("nobody")
        owner = (nobody.pw_uid, nobody.pw_gid)
        drop = (setpriv, f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups")
        drop += ("--pdeathsig=KILL",)  # changing user clears the one unshare --kill-child set
    else:
        namespaces = ("--user", "--map-root-user", *namespaces)
    why = "util-linux's unshare is missing"
    if unshare is not None:
        found = _interpreter((unshare, *namespaces, *drop), prlimit, owner)
        if isinstance(found, str):
            why = f"namespaces are unavailable ({found})"
        elif found[1]:
            return _Launch((unshare, *namespaces, *drop), prlimit, found[0], owner, None)
        else:
            why = "programs share this process's network namespace"
    found = _interpreter(drop, prlimit, owner)
    if isinstance(found, str):
        raise SandboxUnavailable(f"code_eval cannot run programs here: {found}")
    return _Launch(drop, prlimit, found[0], owner, _ISOLATION_WARNING + why)


def _interpreter(
    prefix: tuple[str, ...], prlimit: str | None, owner: tuple[int, int] | None
) -> tuple[str, bool] | str:
    """The interpreter to run programs with behind `prefix`, and whether they get their own
    network namespace; or why none works. Ours first, but nobody may not be able to read it
    (a pyenv build under /root): then a system one of the same version."""
    ours = sys.version_info[:2]
    candidates = [sys.executable, os.path.realpath(sys.executable)]
    system = shutil.which(f"python{ours[0]}.{ours[1]}", path="/usr/local/bin:/usr/bin:/bin")
    candidates += [system] if system else []
    same_minor: tuple[str, bool] | None = None
    why = "no interpreter ran"
    for candidate in dict.fromkeys(candidates):
        launch = _Launch(prefix, prlimit, candidate, owner, None)
        result = _run(launch, _PROBE, _PROBE_LIMITS)
        if not result.passed:
            why = f"{candidate} {result.reason}"
            continue
        try:
            probed = json.loads(result.output)
        except ValueError:
            why = f"{candidate} printed {result.output[:REASON_CHARS]!r}"
            continue
        isolated = probed["net"] != os.readlink("/proc/self/ns/net")
        if probed["version"] == sys.version:
            return candidate, isolated
        if probed["version"].startswith(f"{ours[0]}.{ours[1]}.") and (
            same_minor is None or candidate == system
        ):
            same_minor = candidate, isolated
    return same_minor or why
