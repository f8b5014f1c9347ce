"""Launching Flower's deployment engine for one run, on loopback.

`flower-superlink` first (on a free port, waited for until its health check answers), then one
`flower-supernode` per client (each on its own port, with its share of the cores and its GPU),
then the Flower app, submitted with `flwr run`. Every process gets its own FLWR_HOME under one
temporary folder, Flower's telemetry and update check off, the venv's `bin` on PATH (Flower
starts its helpers by bare name) and what fedtui's apps read from the environment.

Beside each SuperNode runs its client's warm worker (engine.flower.worker), with the same
environment; ahead of the venv on that PATH is a folder whose `flwr-clientapp` is fedtui's relay
(engine.flower.relay), so the ClientApp Flower starts for each message hands it to the worker.
Ahead of it all, for the SuperLink too, a folder of guards: Flower's `flower-superexec`,
`flwr-serverapp` and `flwr-clientapp` run under engine.flower.guard, so that they end with the
controller even when it is killed. A client's processes are started (and started again, by
engine.client_faults) one client at a time.

`backend = "simulation"` starts no SuperNode: the SuperLink runs with `--simulation`, and
`flwr run` asks for `num_clients` virtual SuperNodes (`--federation-config`), which Flower's
simulation runtime trains in Ray actors under the ServerApp's process (`flwr-simulation`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.config import RunConfig
from engine.flower import guard, relay
from engine.flower.run_config import to_run_config
from engine.process_env import (
    CONTROLLER_PID_ENV,
    FLOWER_CLIENTAPP_ENV,
    WORKER_SOCKET_ENV,
    threads_per_client,
)
from engine.processes import ProcessTable, TrackedProcess, die_with_parent

APP_DIR = Path(__file__).parent / "flower" / "app"
ENGINE_PARENT = str(Path(__file__).parent.parent)
GUARDED_PROGRAMS = ("flower-superexec", "flwr-serverapp", "flwr-clientapp", "flwr-simulation")
CONNECTION_NAME = "fedtui"
SUPERLINK_START_TIMEOUT_S = 60.0
SUBMIT_TIMEOUT_S = 120.0
# What a SuperNode prints once registered: the node the ServerApp will see it as.
NODE_ID_LINE = re.compile(rb"SuperNode ID: (\d+)")


class ServerGone(RuntimeError):
    """The SuperLink or the ServerApp died: the run cannot go on."""


class FlowerLauncher:
    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        processes: ProcessTable,
        *,
        app_environment: dict[str, str],
        gpus: list[int],
        notice: Callable[[str], None],
        check_abort: Callable[[], None],
    ) -> None:
        """`gpus`: the devices clients are pinned to, round-robin; `check_abort` raises when the
        user aborted, and is called while waiting for the SuperLink."""
        self.config = config
        self.run_dir = run_dir
        self._processes = processes
        self._app_environment = app_environment
        self._gpus = gpus
        self._notice = notice
        self._check_abort = check_abort
        self._flwr_home = Path(tempfile.mkdtemp(prefix=f"fedtui-flwr-{run_dir.name}-"))
        self._superlink: TrackedProcess | None = None
        self._superlink_port = 0
        self.supernodes: dict[int, TrackedProcess] = {}
        self.workers: dict[int, TrackedProcess] = {}
        self._node_log_start: dict[int, int] = {}  # where the SuperNode's current run begins
        self._ray_dir: Path | None = None

    def launch(self) -> None:
        """Start the SuperLink and every client's processes, then submit the app; raises
        RuntimeError naming the log to read when one of them fails."""
        self._write_programs()
        self._superlink_port = self._start_superlink()
        if self.config.backend == "simulation":
            self._submit(self._superlink_port)
            return
        for client in range(self.config.num_clients):
            if self.config.warm_workers:
                self.start_worker(client)
            self.start_supernode(client)
        self._notice(f"started {self.config.num_clients} flower-supernode processes")
        self._submit(self._superlink_port)

    def check_superlink_alive(self) -> None:
        """Raise ServerGone if the SuperLink has exited: without it there is no run."""
        process = self._superlink
        if process is not None and process.popen is not None and process.popen.poll() is not None:
            raise ServerGone(
                f"flower-superlink (pid {process.pid}) exited with code "
                f"{process.popen.returncode} (see logs/superlink.log)"
            )

    def start_supernode(self, client: int) -> TrackedProcess:
        log_path = self.run_dir / "logs" / f"supernode-{client}.log"
        self._node_log_start[client] = log_path.stat().st_size if log_path.exists() else 0
        self.supernodes[client] = self._processes.spawn(
            "supernode",
            [
                _flower_program("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self._superlink_port}",
                "--port",
                str(_free_port()),
                "--node-config",
                f"partition-id={client} num-partitions={self.config.num_clients}",
            ],
            env=self._client_environment(client),
            client=client,
            log_path=log_path,
        )
        return self.supernodes[client]

    def start_worker(self, client: int) -> TrackedProcess:
        self.workers[client] = self._processes.spawn(
            "worker",
            [sys.executable, "-m", "engine.flower.worker", "--client", str(client)],
            env=self._client_environment(client),
            client=client,
            log_path=self.run_dir / "logs" / f"worker-{client}.log",
        )
        return self.workers[client]

    def registered_node(self, client: int) -> int | None:
        """The node ID `client`'s current SuperNode registered as, once it has said so."""
        log_path = self.run_dir / "logs" / f"supernode-{client}.log"
        try:
            with open(log_path, "rb") as log:
                log.seek(self._node_log_start.get(client, 0))
                found = NODE_ID_LINE.search(log.read())
        except OSError:
            return None
        return int(found.group(1)) if found else None

    def remove_flwr_home(self) -> None:
        """Once every process is gone: Flower's (and Ray's) state for this run is not kept."""
        shutil.rmtree(self._flwr_home, ignore_errors=True)
        if self._ray_dir is not None:
            shutil.rmtree(self._ray_dir, ignore_errors=True)

    def _start_superlink(self) -> int:
        port = _free_port()
        self._notice(f"starting flower-superlink on 127.0.0.1:{port}")
        self._superlink = self._processes.spawn(
            "superlink",
            [
                _flower_program("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
                *(["--simulation"] if self.config.backend == "simulation" else []),
            ],
            env=self._superlink_environment(),
            log_path=self.run_dir / "logs" / "superlink.log",
        )
        deadline = time.monotonic() + SUPERLINK_START_TIMEOUT_S
        while not _healthy(port):
            self._check_abort()
            self.check_superlink_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"flower-superlink did not answer on port {port} within "
                    f"{SUPERLINK_START_TIMEOUT_S:g}s (see logs/superlink.log)"
                )
            time.sleep(0.2)
        return port

    def _superlink_environment(self) -> dict[str, str]:
        """The SuperLink's, and under it the ServerApp's; in simulation also the virtual
        clients' (Ray's workers inherit it): their share of the cores, Ray's files in a
        folder of the run's (a short path: Ray's socket paths must fit in 107 bytes), and a
        `sitecustomize` that puts every Python process of Ray's under the controller's watch
        (Ray's agents outlive a killed controller otherwise)."""
        env = self._environment(self._flwr_home / "superlink")
        if self.config.backend == "simulation":
            threads = str(threads_per_client(self.config))
            ray_dir = Path(tempfile.mkdtemp(prefix="fedtui-ray-"))
            self._ray_dir = ray_dir
            env.update(
                OMP_NUM_THREADS=threads,
                MKL_NUM_THREADS=threads,
                PYTHONPATH=os.pathsep.join(
                    [str(self._flwr_home / "watched"), env.get("PYTHONPATH", "")]
                ).rstrip(os.pathsep),
                RAY_TMPDIR=str(ray_dir),
                RAY_USAGE_STATS_ENABLED="0",
            )
        return env

    def _client_environment(self, client: int) -> dict[str, str]:
        """What a client's SuperNode and worker run with: their share of the cores, their GPU,
        and (warm workers) the relay first on PATH."""
        home = self._flwr_home / f"supernode-{client}"
        env = self._environment(home)
        threads = str(threads_per_client(self.config))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        if self._gpus and self.config.device != "cpu":  # pin: client k on gpus[k mod n]
            env.update(
                CUDA_DEVICE_ORDER="PCI_BUS_ID",
                CUDA_VISIBLE_DEVICES=str(self._gpus[client % len(self._gpus)]),
            )
        if self.config.warm_workers:
            env.update(
                {
                    WORKER_SOCKET_ENV: str(home / "worker.sock"),
                    "PATH": f"{self._flwr_home / 'relay'}{os.pathsep}{env['PATH']}",
                }
            )
        return env

    def _write_programs(self) -> None:
        """The guards of Flower's programs, and the relay that stands for `flwr-clientapp`."""
        guards, relay_dir = self._flwr_home / "guards", self._flwr_home / "relay"
        guards.mkdir()
        for program in GUARDED_PROGRAMS:
            _write_executable(
                guards / program, guard.script(sys.executable, ENGINE_PARENT, program)
            )
        if self.config.backend == "simulation":
            watched = self._flwr_home / "watched"
            watched.mkdir()
            (watched / "sitecustomize.py").write_text(guard.SITECUSTOMIZE)
        elif self.config.warm_workers:
            relay_dir.mkdir()
            _write_executable(
                relay_dir / "flwr-clientapp", relay.script(sys.executable, ENGINE_PARENT)
            )

    def _submit(self, superlink_port: int) -> None:
        cli_home = self._flwr_home / "cli"
        cli_home.mkdir(parents=True)
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n'
            f'[superlink.{CONNECTION_NAME}]\naddress = "127.0.0.1:{superlink_port}"\n'
            f"insecure = true\n",
            encoding="utf-8",
        )
        overrides = cli_home / "run-config.toml"
        overrides.write_text(
            "".join(f'{key} = "{value}"\n' for key, value in to_run_config(self.config).items())
        )
        self._notice("submitting the Flower app")
        completed = subprocess.run(
            [
                _flower_program("flwr"),
                "run",
                str(APP_DIR),
                CONNECTION_NAME,
                "--run-config",
                str(overrides),
                *self._federation_config(),
                "--format",
                "json",
            ],
            env=self._environment(cli_home),
            capture_output=True,
            text=True,
            timeout=SUBMIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        (self.run_dir / "logs" / "flwr-run.log").write_text(completed.stdout + completed.stderr)
        try:
            reply = json.loads(completed.stdout)
        except json.JSONDecodeError:
            reply = {}
        if completed.returncode != 0 or not reply.get("success", False):
            raise RuntimeError(
                f"flwr run failed (see logs/flwr-run.log): "
                f"{(completed.stdout + completed.stderr).strip()[-300:]}"
            )
        self._notice(f"Flower run {reply.get('run-id')} submitted")

    def _federation_config(self) -> list[str]:
        """`flwr run`'s simulation settings: the virtual SuperNodes and each one's resources."""
        if self.config.backend != "simulation":
            return []
        settings = {
            "num-supernodes": self.config.num_clients,
            "client-resources-num-cpus": self.config.client_cpus,
            "client-resources-num-gpus": self.config.client_gpu_fraction
            or (1.0 if self._gpus and self.config.device != "cpu" else 0.0),
            "init-args-log-to-driver": "true",
            "init-args-logging-level": '"warning"',
        }
        return ["--federation-config", " ".join(f"{k}={v}" for k, v in settings.items())]

    def _environment(self, flwr_home: Path) -> dict[str, str]:
        flwr_home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        guards = self._flwr_home / "guards"
        env.update(
            {
                "FLWR_HOME": str(flwr_home),
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
                "PYTHONUNBUFFERED": "1",
                "PATH": os.pathsep.join(
                    [str(guards), str(Path(sys.executable).parent), env.get("PATH", "")]
                ),
                CONTROLLER_PID_ENV: str(os.getpid()),
                FLOWER_CLIENTAPP_ENV: str(guards / "flwr-clientapp"),
            }
        )
        env.update(self._app_environment)
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MALLOC_MMAP_THRESHOLD))
        return env


# glibc serves buffers above this size with their own mmap and returns them to the system when
# they are freed. By default it raises the threshold after the first such free, after which
# model-sized buffers (weights arriving in 5 MB chunks, their copies) come from the heap and
# stay in the process's RSS: a fixed threshold cut the ServerApp's peak by a fifth
# (BENCHMARKS.md, "Memory at a realistic size").
MALLOC_MMAP_THRESHOLD = 1024 * 1024


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(port: int) -> bool:
    try:
        with _LOOPBACK.open(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _flower_program(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
