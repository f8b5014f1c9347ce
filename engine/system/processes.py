"""Every process a run starts, directly or through Flower, tracked by PID until it is gone.

Flower's SuperExec starts its children in new sessions, so a process-group kill misses them, and
a SuperNode that dies leaves its SuperExec reparented to init. The table therefore records each
descendant the moment it is seen (PID plus start time, so a reused PID is never mistaken for
it) and ends them one by one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine.core import events as ev

ROLE_BY_PROGRAM = {
    "flower-superexec": "superexec",
    "flwr-serverapp": "serverapp",
    "flwr-simulation": "serverapp",  # the ServerApp, with Ray's virtual clients under it
    "flwr-clientapp": "clientapp",
}
# A child still running its parent's program on two scans in a row: forked, and not started a
# program of its own. Its command line is its parent's, so naming it by program would count a
# ServerApp's short-lived helper as a second ServerApp.
FORKED = "fork"

_PR_SET_PDEATHSIG = 1
ORPHANED_EXIT_CODE = 70  # as engine.system.guard's: the controller was gone
# The niceness of a run's control plane (SuperLink, SuperNodes and what they start), beside
# clients that train at 0: on a machine whose cores the training threads fill, each of its
# wakeups would otherwise take a core from one training thread and stall the others at their
# next barrier (BENCHMARKS.md, "Training speed"). A niced process also runs under SCHED_BATCH,
# so that waking it never preempts a running thread: it waits for a free core or the end of
# that thread's time slice (a few milliseconds). Its work still runs whenever a core is free.
CONTROL_PLANE_NICE = 19
_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


@dataclass
class TrackedProcess:
    pid: int
    role: str
    client: int | None
    created: float
    popen: subprocess.Popen[bytes] | None = None
    alive: bool = True
    returncode: int | None = None

    def event(self) -> ev.Event:
        """What the record says of it: `process_started` while it lives, then `process_exited`."""
        if self.alive:
            return ev.make(ev.PROCESS_STARTED, role=self.role, pid=self.pid, client=self.client)
        return ev.make(
            ev.PROCESS_EXITED,
            role=self.role,
            pid=self.pid,
            client=self.client,
            returncode=self.returncode,
        )


Listener = Callable[[TrackedProcess], None]


class ProcessTable:
    def __init__(self, on_started: Listener, on_exited: Listener) -> None:
        self._on_started = on_started
        self._on_exited = on_exited
        self._tracked: dict[tuple[int, float], TrackedProcess] = {}
        # Children seen once still running their parent's program: looked at again next scan.
        self._maybe_forked: set[tuple[int, float]] = set()

    def spawn(
        self,
        role: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        client: int | None = None,
        nice: int = 0,
    ) -> TrackedProcess:
        """Start a process in its own session (a terminal's Ctrl+C reaches only fedtui), with
        its output in `log_path` and `nice` added to its niceness (above 0, as a SCHED_BATCH
        job; its children inherit both), and have the kernel end it if fedtui itself dies."""
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=functools.partial(_in_child, os.getpid(), nice),
            )
        process = TrackedProcess(popen.pid, role, client, _created(popen.pid), popen)
        self._track(process)
        return process

    def scan(self) -> None:
        """Record processes that have exited, then new descendants."""
        for process in self.alive():
            if not self._still_running(process):
                self._mark_exited(process)
        children_of = _children_by_parent()  # one pass over /proc, not one per process
        known = {process.pid for process in self.alive()}
        for process in self.alive():
            for child in _descendants(process.pid, children_of):
                if child not in known:
                    known.add(child)
                    self._adopt(child, process.client)
        self._maybe_forked = {key for key in self._maybe_forked if key[0] in known}

    def alive(self) -> list[TrackedProcess]:
        return [process for process in self._tracked.values() if process.alive]

    def all(self) -> list[TrackedProcess]:
        return list(self._tracked.values())

    def terminate_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every live process, SIGKILL what is left after `grace_s`, by PID."""
        self.scan()
        for process in self.alive():
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._refresh_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in self.alive():
            self._signal(process, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while self._refresh_alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self, processes: list[TrackedProcess], timeout_s: float = 5.0) -> None:
        """SIGKILL `processes` and wait (up to `timeout_s`) until they are gone."""
        for process in processes:
            self._signal(process, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.scan()
            if not any(process.alive for process in processes):
                return
            time.sleep(0.05)

    def _refresh_alive(self) -> list[TrackedProcess]:
        self.scan()  # children spawned during shutdown are caught too
        return self.alive()

    def _adopt(self, pid: int, client: int | None) -> None:
        try:
            child = psutil.Process(pid)
            key = (child.pid, child.create_time())
            if key in self._tracked:
                return
            command = child.cmdline()  # read once: it is empty once the child has exited
            program = Path(command[1] if len(command) > 1 else child.name()).name
            role = ROLE_BY_PROGRAM.get(program) or ROLE_BY_PROGRAM.get(child.name(), child.name())
            parent = child.parent()
            if parent is not None and command == parent.cmdline():
                # Between fork and exec: under load (the control plane runs niced) the moment
                # can outlast a scan, and the program it is about to run names its role.
                if key not in self._maybe_forked:
                    self._maybe_forked.add(key)
                    return
                role = FORKED
            if _is_ray(command, child.name()):
                role = "ray"
        except psutil.Error:
            return
        self._track(TrackedProcess(child.pid, role, client, key[1]))

    def _track(self, process: TrackedProcess) -> None:
        self._tracked[(process.pid, process.created)] = process
        self._on_started(process)

    def _still_running(self, process: TrackedProcess) -> bool:
        if process.popen is not None:
            return process.popen.poll() is None
        try:
            proc = psutil.Process(process.pid)
            return proc.create_time() == process.created and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _mark_exited(self, process: TrackedProcess) -> None:
        process.alive = False
        if process.popen is not None:
            process.returncode = process.popen.returncode
        self._on_exited(process)

    def _signal(self, process: TrackedProcess, signum: int) -> None:
        if not self._still_running(process):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _is_ray(command: list[str], name: str) -> bool:
    """One of Ray's processes (the simulation runtime's): its servers, workers and actors."""
    return name in ("gcs_server", "raylet") or any(
        part.startswith("ray::") or "/ray/" in part for part in command[:3]
    )


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from /proc/PID/stat read directly: a run's supervisor scans
    several times a second beside the training threads, and psutil's per-process objects cost
    four times as much (BENCHMARKS.md, "Training speed")."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read()
        except OSError:  # gone meanwhile
            continue
        # after the command name in parentheses (which may hold spaces): state, then ppid
        parent = int(fields[fields.rindex(b")") + 2 :].split(b" ", 2)[1])
        children.setdefault(parent, []).append(int(name))
    return children


def _descendants(pid: int, children_of: dict[int, list[int]]) -> list[int]:
    found, waiting = [], [pid]
    while waiting:
        for child in children_of.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


def _created(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _in_child(parent_pid: int, nice: int) -> None:
    die_with_parent(parent_pid)
    if nice:
        os.nice(nice)
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def die_with_parent(parent_pid: int) -> None:
    """In a child, before it execs: the kernel SIGKILLs it when the thread that started it ends
    (for fedtui's children: the run's supervisor thread, which lives as long as the run). A
    parent killed between the fork and this call never sends the signal: then the child,
    already an orphan, ends itself. `parent_pid`: the process that forks, read before the
    fork (`functools.partial(die_with_parent, os.getpid())`)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(ORPHANED_EXIT_CODE)
