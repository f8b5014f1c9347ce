"""No process of a run outlives its controller, even a controller killed with SIGKILL.

The processes fedtui starts itself die with it (the kernel's parent-death signal, see
engine.system.processes). Flower starts the rest under them: SuperExec under the SuperLink and under
each SuperNode, then the ServerApp and the ClientApps under SuperExec, each in a new session.
Flower's own parent monitors make them exit eventually, but not always: a ServerApp whose
SuperLink was gone was seen alive minutes later, retrying to report to it. So every one of them
watches the controller itself, and ends at once when it is gone.

`watch_controller()` does that from inside a process (the relay calls it). For Flower's own
programs the deployment puts a script of the same name first on PATH that starts the watch, then
runs Flower's console entry point in the same process: no extra process, Flower's code as it is.
Ray (the simulation runtime) starts Python processes of its own, whose agents were seen alive
long after a killed controller: they find `SITECUSTOMIZE` on their PYTHONPATH. A folder
registered with `remove_when_gone` (the ServerApp's shared-memory weights) goes with them.

Standard library only: the relay imports this under `python -IS`.
"""

from __future__ import annotations

import os
import select
import shutil
import stat
import sys
import threading
import time
from pathlib import Path

# Kept equal to engine.core.process_env's (which this module may not import).
CONTROLLER_PID_ENV = "FEDTUI_CONTROLLER_PID"
CONTROLLER_GONE_EXIT_CODE = 70
_POLL_S = 0.2
_remove_when_gone: list[str] = []


# Every Python process that finds this first on its path watches the controller from start-up.
SITECUSTOMIZE = "from engine.system.guard import watch_controller\n\nwatch_controller()\n"


def script(python: str, engine_parent: str, program: str, prelude: str = "") -> str:
    """The text of an executable named `program` that runs Flower's `program` under the watch,
    after `prelude` (Python statements, e.g. fedtui's adaptation of the program)."""
    return (
        f"#!{python}\n"
        f"import sys\n"
        f"sys.path.insert(0, {engine_parent!r})\n"
        f"{prelude}"
        f"from engine.system.guard import run_guarded\n"
        f"sys.exit(run_guarded({program!r}))\n"
    )


def run_guarded(program: str) -> int:
    """Watch the controller, then run Flower's console script `program` in this process."""
    from importlib.metadata import entry_points

    watch_controller()
    (entry,) = entry_points(group="console_scripts", name=program)
    code = entry.load()()
    return code if isinstance(code, int) else 0


def watch_controller() -> None:
    """End this process as soon as the controller named in the environment is gone."""
    value = os.environ.get(CONTROLLER_PID_ENV, "")
    if value.isdigit():
        threading.Thread(
            target=_exit_when_gone, args=(int(value),), name="controller-watch", daemon=True
        ).start()


def remove_when_gone(path: os.PathLike[str] | str) -> None:
    """Remove the folder `path` too if the controller goes (shared memory outlives a process)."""
    _remove_when_gone.append(os.fspath(path))


def remove_if_mine(path: Path) -> None:
    """Remove the folder `path`, a leftover found by its name in a folder every user writes to
    (/tmp, /dev/shm), only if it is a folder (not a link) this user owns: a name is no proof."""
    try:
        found = path.lstat()
    except OSError:
        return
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid():
        shutil.rmtree(path, ignore_errors=True)


def _exit_when_gone(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)  # readable once the process has exited; immune to PID reuse
    except ProcessLookupError:
        pass  # gone already
    except (AttributeError, OSError):  # no pidfd (old kernel, other OS): poll
        while _exists(pid):
            time.sleep(_POLL_S)
    else:
        select.select([handle], [], [])
    print(f"{sys.argv[0]}: the fedtui controller (pid {pid}) is gone; exiting", file=sys.stderr)
    for path in _remove_when_gone:
        shutil.rmtree(path, ignore_errors=True)
    os._exit(CONTROLLER_GONE_EXIT_CODE)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
