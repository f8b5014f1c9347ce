"""The folder and environment Flower's programs run in, for a run (engine.flower.deployment) or for
one client host (engine.run.client_host).

Under one temporary root: a FLWR_HOME per process, `guards/` (Flower's `flower-superexec`,
`flwr-serverapp`, `flwr-clientapp` and `flwr-simulation` run under engine.system.guard, so that
they end with the process that started them even when it is killed) and `relay/` (fedtui's
`flwr-clientapp`, which hands each message to the client's warm worker). The environment puts
the guards first on PATH, then the venv's `bin` (Flower starts its helpers by bare name), turns
off Flower's telemetry and update check, and names the PID everything must end with. Flower's
`FLWR_INTERNAL_*` switches are never passed on: `FLWR_INTERNAL_GRPC_CONTROL_API=1` would open an
unguarded gRPC Control API on 0.0.0.0 beside the SuperLink's guarded one (engine.flower.superlink).
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from pathlib import Path

import psutil

from engine.core.process_env import CONTROLLER_PID_ENV, FLOWER_CLIENTAPP_ENV
from engine.flower import relay
from engine.flower.internals import GUARDED_PROGRAMS
from engine.system import guard

ENGINE_PARENT = str(Path(__file__).parents[2])
GUARDS, RELAY = "guards", "relay"
# `flower-superlink`, only its Fleet API open to other users and hosts (engine.flower.superlink),
# `flower-supernode`, with a short idle poll (engine.flower.supernode), and a client's warm
# worker (+ "--client N"). `-P`: `-m` would put the working folder first on the path, and a
# folder named `engine/` where the user runs fedtui would be imported instead of fedtui's.
SUPERLINK = (sys.executable, "-P", "-m", "engine.flower.superlink")
SUPERNODE = (sys.executable, "-P", "-m", "engine.flower.supernode")
WORKER = (sys.executable, "-P", "-m", "engine.flower.worker")
# What a guarded program does first: Flower's ClientApp entry installs only fedtui's app;
# SuperExec asks for no task while one it started runs (engine.flower.superexec).
PRELUDES = {
    "flwr-clientapp": (
        "from engine.flower.own_app import refuse_foreign_apps\nrefuse_foreign_apps()\n"
    ),
    "flower-superexec": (
        "from engine.flower.superexec import ask_less_while_a_task_runs\n"
        "ask_less_while_a_task_runs()\n"
    ),
}
# The environment's `-P`, for every Python process under them, Flower's included.
SAFE_PATH_ENV = "PYTHONSAFEPATH"
# What a SuperNode logs once registered: the node the ServerApp will see it as.
NODE_ID_LINE = re.compile(r"SuperNode ID: (\d+)")

# glibc serves buffers above this size with their own mmap and returns them to the system when
# they are freed. By default it raises the threshold after the first such free, after which
# model-sized buffers (weights arriving in 5 MB chunks, their copies) come from the heap and
# stay in the process's RSS: a fixed threshold cut the ServerApp's peak by a fifth
# (BENCHMARKS.md, "Memory at a realistic size").
MALLOC_MMAP_THRESHOLD = 1024 * 1024
MALLOC_ENV = "MALLOC_MMAP_THRESHOLD_"
INTERNAL_ENV_PREFIX = "FLWR_INTERNAL_"
_TEMP_FOLDER = re.compile(r"fedtui-(?:flwr|ray|join)-(\d+)-")


def temp_folder(kind: str, name: str = "") -> Path:
    """A new temporary folder (`kind`: "flwr", "ray" or "join"), named after this process so
    that a later run can remove it if this process is killed before it can (remove_orphans)."""
    return Path(tempfile.mkdtemp(prefix=f"fedtui-{kind}-{os.getpid()}-{name}"))


def remove_orphans(folder: Path | None = None) -> None:
    """Remove the temporary folders (in `folder`, default the system's) of fedtui processes
    that are gone: SIGKILL skips their own cleanup (their runs' processes end with them,
    engine.system.guard)."""
    for path in Path(folder or tempfile.gettempdir()).glob("fedtui-*"):
        maker = _TEMP_FOLDER.match(path.name)
        if maker and not psutil.pid_exists(int(maker[1])):
            guard.remove_if_mine(path)


def write_guards(root: Path) -> None:
    (root / GUARDS).mkdir()
    for name in GUARDED_PROGRAMS:
        text = guard.script(sys.executable, ENGINE_PARENT, name, PRELUDES.get(name, ""))
        _write_executable(root / GUARDS / name, text)


def write_relay(root: Path) -> None:
    (root / RELAY).mkdir()
    _write_executable(root / RELAY / "flwr-clientapp", relay.script(sys.executable, ENGINE_PARENT))


def environment(root: Path, flwr_home: Path, extra: dict[str, str]) -> dict[str, str]:
    """This process's environment for one of Flower's programs, FLWR_HOME `flwr_home` (made if
    missing), with `extra` on top."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not _internal(name)}
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
            SAFE_PATH_ENV: "1",
            "PATH": os.pathsep.join(
                [str(root / GUARDS), str(Path(sys.executable).parent), env.get("PATH", "")]
            ),
            CONTROLLER_PID_ENV: str(os.getpid()),
            FLOWER_CLIENTAPP_ENV: str(root / GUARDS / "flwr-clientapp"),
        }
    )
    env.update({name: value for name, value in extra.items() if not _internal(name)})
    env.setdefault(MALLOC_ENV, str(MALLOC_MMAP_THRESHOLD))
    return env


def for_training(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process that trains (a worker; in simulation, Ray's under the SuperLink):
    without MALLOC_MMAP_THRESHOLD_, unless the user set it. Training frees and allocates
    activations over 1 MiB every step: under the fixed threshold each is a fresh mmap, page
    faults and all (~30% slower; BENCHMARKS.md)."""
    if MALLOC_ENV in os.environ:
        return env
    return {name: value for name, value in env.items() if name != MALLOC_ENV}


def _internal(name: str) -> bool:
    return name.upper().startswith(INTERNAL_ENV_PREFIX)


def with_relay(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` with fedtui's `flwr-clientapp` relay ahead of everything on PATH."""
    return {**env, "PATH": f"{root / RELAY}{os.pathsep}{env['PATH']}"}


def program(name: str) -> str:
    """A Flower program: the one beside this Python, else by name on PATH."""
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
