"""Processes found by a mark in their environment: a process keeps its environment when its
parent dies, so an orphan is found as surely as a child."""

import os

import psutil

from engine.core import events as ev
from engine.flower.home import MALLOC_ENV


def processes_with(name, value):
    """(pid, command line) of every live process whose environment has `name`=`value`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(name) == value:
                found.append((process.pid, process.cmdline()))
        except psutil.Error:
            continue
    return found


class ProcessSettings:
    """What each process of a run runs with, read while its clients train: an `on_event` for
    tests.e2e.test_real_runs.start. `seen`: (role, niceness, whether the fixed malloc threshold
    is in its environment); `batch`: the roles that run under the SCHED_BATCH policy."""

    def __init__(self):
        self._roles = {}
        self.seen = set()
        self.batch = set()

    def __call__(self, controller, event):
        if event["type"] == ev.PROCESS_STARTED:
            self._roles[event["pid"]] = event["role"]
        elif event["type"] == ev.CLIENT_PROGRESS and not self.seen:
            for pid, role in self._roles.items():
                try:
                    process = psutil.Process(pid)
                    self.seen.add((role, process.nice(), MALLOC_ENV in process.environ()))
                    if os.sched_getscheduler(pid) == os.SCHED_BATCH:
                        self.batch.add(role)
                except (psutil.Error, ProcessLookupError):
                    continue

    def of(self, *roles):
        return {(nice, malloc) for role, nice, malloc in self.seen if role in roles}
