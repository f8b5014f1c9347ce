"""Processes found by a mark in their environment: a process keeps its environment when its
parent dies, so an orphan is found as surely as a child."""

import psutil


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
