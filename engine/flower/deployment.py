"""Launching Flower's deployment engine for one run, on loopback.

`flower-superlink` first (on a free port, waited for until its health check answers; other
users and hosts reach only its Fleet API, engine.flower.superlink), then one `flower-supernode`
per client (each on its own port, with its share of the cores and its GPU), then the Flower
app, submitted with `flwr run` (engine.flower.flwr_cli). Every process gets its own FLWR_HOME
under one temporary folder, Flower's telemetry and update check off, the venv's `bin` on PATH
(Flower starts its helpers by bare name) and what fedtui's apps read from the environment.

Beside each SuperNode runs its client's warm worker (engine.flower.worker), with the same
environment; ahead of the venv on that PATH is a folder whose `flwr-clientapp` is fedtui's relay
(engine.flower.relay), so the ClientApp Flower starts for each message hands it to the worker.
Ahead of it all, for the SuperLink too, a folder of guards: Flower's `flower-superexec`,
`flwr-serverapp` and `flwr-clientapp` run under engine.system.guard, so that they end with the
controller even when it is killed. A client's processes are started (and started again, by
engine.run.client_supervisor) one client at a time.

`backend = "simulation"` starts no SuperNode: the SuperLink runs with `--simulation`, and
`flwr run` asks for `num_clients` virtual SuperNodes (`--federation-config`), which Flower's
simulation runtime trains in Ray actors under the ServerApp's process (`flwr-simulation`).
"""

from __future__ import annotations

import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.app import shared_weights
from engine.app.run_config import to_run_config
from engine.core.config import RunConfig
from engine.core.process_env import (
    WORKER_SOCKET_ENV,
    threads_per_client,
)
from engine.flower import home as flower_home
from engine.flower.flwr_cli import FlowerCli
from engine.net.federation import WILDCARD_HOSTS, Address, ServerFiles, ServeSettings
from engine.system import guard
from engine.system.processes import CONTROL_PLANE_NICE, ProcessTable, TrackedProcess

SUPERLINK_START_TIMEOUT_S = 60.0


class ServerGone(RuntimeError):
    """The SuperLink or the ServerApp died: the run cannot go on."""


class FlowerDeployment:
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
        serve: ServeSettings | None = None,
        server_files: ServerFiles | None = None,
    ) -> None:
        """`gpus`: the devices clients are pinned to, round-robin; `check_abort` raises when the
        user aborted, and is called while waiting for the SuperLink. `serve`: the clients join
        from other hosts, through a SuperLink listening there (with TLS and SuperNode
        authentication from `server_files`, unless insecure)."""
        self.config = config
        self.serve = serve
        self._tls = server_files if serve is not None and not serve.insecure else None
        self.run_dir = run_dir
        self._processes = processes
        self._app_environment = app_environment
        self._gpus = gpus
        self._notice = notice
        self._check_abort = check_abort
        flower_home.remove_orphans()
        self._flwr_home = flower_home.temp_folder("flwr")  # short: worker sockets live in it
        self._superlink: TrackedProcess | None = None
        self._superlink_port = 0
        self.supernodes: dict[int, TrackedProcess] = {}
        self.workers: dict[int, TrackedProcess] = {}
        self._node_log_start: dict[int, int] = {}  # where the SuperNode's current run begins
        self._registered: dict[int, int] = {}  # client -> its current SuperNode's node ID
        self._ray_dir: Path | None = None
        self._cli: FlowerCli | None = None

    def launch(self) -> None:
        """Start the SuperLink and every client's processes, then submit the app; raises
        RuntimeError naming the log to read when one of them fails."""
        self._write_programs()
        self._start_superlink()
        if self._tls is not None:  # only nodes whose key the SuperLink holds may join
            keys = self._tls.authorized_keys
            self._notice(f"registering {len(keys)} authorized SuperNode key(s)")
            for key in keys:
                self._flower_cli().register_supernode(key)
        if self.config.backend == "simulation" or self.serve is not None:
            self._submit()
            return
        for client in range(self.config.num_clients):
            if self.config.warm_workers:
                self.start_worker(client)
            self.start_supernode(client)
        self._notice(f"started {self.config.num_clients} flower-supernode processes")
        self._submit()

    @property
    def _superlink_address(self) -> Address:
        """Where this machine reaches the SuperLink: loopback, unless it listens elsewhere."""
        listen = self.serve.listen if self.serve is not None else None
        if listen is None or listen.host in WILDCARD_HOSTS:
            return Address("127.0.0.1", self._superlink_port)
        return listen

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
        self._registered.pop(client, None)
        env, warm = self._client_environment(client), self.config.warm_workers
        self.supernodes[client] = self._processes.spawn(
            "supernode",
            [
                *flower_home.SUPERNODE,
                "--insecure",
                "--superlink",
                str(self._superlink_address),
                "--port",
                str(flower_home.free_port()),
                "--node-config",
                f"partition-id={client} num-partitions={self.config.num_clients}",
            ],
            # without warm workers, a client trains in a ClientApp under its SuperNode
            env=env if warm else flower_home.for_training(env),
            client=client,
            log_path=log_path,
            nice=CONTROL_PLANE_NICE if warm else 0,
        )
        return self.supernodes[client]

    def start_worker(self, client: int) -> TrackedProcess:
        self.workers[client] = self._processes.spawn(
            "worker",
            [*flower_home.WORKER, "--client", str(client)],
            env=flower_home.for_training(self._client_environment(client)),
            client=client,
            log_path=self.run_dir / "logs" / f"worker-{client}.log",
        )
        return self.workers[client]

    def registered_node(self, client: int) -> int | None:
        """The node ID `client`'s current SuperNode registered as, once it has said so (its log,
        which grows all run long, is read only until then)."""
        if client in self._registered:
            return self._registered[client]
        log_path = self.run_dir / "logs" / f"supernode-{client}.log"
        try:
            with open(log_path, "rb") as log:
                log.seek(self._node_log_start.get(client, 0))
                found = flower_home.NODE_ID_LINE.search(log.read().decode(errors="replace"))
        except OSError:
            return None
        if found is None:
            return None
        self._registered[client] = int(found.group(1))
        return self._registered[client]

    def remove_flwr_home(self) -> None:
        """Once every process is gone: Flower's (and Ray's) state for this run is not kept, nor
        weight files a killed ServerApp left in shared memory."""
        shutil.rmtree(self._flwr_home, ignore_errors=True)
        if self._ray_dir is not None:
            shutil.rmtree(self._ray_dir, ignore_errors=True)
        shared_weights.remove_leftovers(self.run_dir.name)

    def _start_superlink(self) -> None:
        host, port = "127.0.0.1", flower_home.free_port()
        if self.serve is not None:
            host, port = self.serve.listen.host, self.serve.listen.port
        self._superlink_port = port
        self._notice(f"starting flower-superlink on {Address(host, port)}")
        security = ["--insecure"]
        if self._tls is not None:
            security = [
                "--ssl-ca-certfile",
                str(self._tls.ca_cert.absolute()),
                "--ssl-certfile",
                str(self._tls.server_cert.absolute()),
                "--ssl-keyfile",
                str(self._tls.server_key.absolute()),
                "--enable-supernode-auth",
            ]
        self._superlink = self._processes.spawn(
            "superlink",
            [
                *flower_home.SUPERLINK,
                *security,
                "--host",
                host,
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
                *(["--simulation"] if self.config.backend == "simulation" else []),
            ],
            env=self._superlink_environment(),
            log_path=self.run_dir / "logs" / "superlink.log",
            # in simulation, the virtual clients train under it
            nice=CONTROL_PLANE_NICE if self.config.backend != "simulation" else 0,
        )
        deadline = time.monotonic() + SUPERLINK_START_TIMEOUT_S
        while not _healthy(self._superlink_address, self._tls.ca_cert if self._tls else None):
            self._check_abort()
            self.check_superlink_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"flower-superlink did not answer on port {port} within "
                    f"{SUPERLINK_START_TIMEOUT_S:g}s (see logs/superlink.log)"
                )
            time.sleep(0.2)

    def _superlink_environment(self) -> dict[str, str]:
        """The SuperLink's, and under it the ServerApp's; in simulation also the virtual
        clients' (Ray's workers inherit it): their share of the cores, Ray's files in a
        folder of the run's (a short path: Ray's socket paths must fit in 107 bytes), and a
        `sitecustomize` that puts every Python process of Ray's under the controller's watch
        (Ray's agents outlive a killed controller otherwise)."""
        env = self._environment(self._flwr_home / "superlink")
        if self.config.backend == "simulation":
            threads = str(threads_per_client(self.config))
            ray_dir = flower_home.temp_folder("ray")
            self._ray_dir = ray_dir
            env = flower_home.for_training(env)
            env.update(
                OMP_NUM_THREADS=threads,
                MKL_NUM_THREADS=threads,
                PYTHONPATH=os.pathsep.join(
                    [str(self._flwr_home / "watched"), env.get("PYTHONPATH", "")]
                ).rstrip(os.pathsep),
                RAY_TMPDIR=str(ray_dir),
                RAY_USAGE_STATS_ENABLED="0",
                # Ray starts its workers at niceness 15: the virtual clients would yield the
                # cores to every other process (BENCHMARKS.md, "Training speed")
                RAY_worker_niceness="0",
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
            env[WORKER_SOCKET_ENV] = str(home / "worker.sock")
            env = flower_home.with_relay(env, self._flwr_home)
        return env

    def _write_programs(self) -> None:
        """The guards of Flower's programs, and the relay that stands for `flwr-clientapp`."""
        flower_home.write_guards(self._flwr_home)
        if self.config.backend == "simulation":
            watched = self._flwr_home / "watched"
            watched.mkdir()
            (watched / "sitecustomize.py").write_text(guard.SITECUSTOMIZE)
        elif self.config.warm_workers:
            flower_home.write_relay(self._flwr_home)

    def _flower_cli(self) -> FlowerCli:
        if self._cli is None:
            self._cli = FlowerCli(
                self._flwr_home / "cli",
                self._superlink_address,
                self._tls.ca_cert if self._tls is not None else None,
                self._environment,
                self.run_dir / "logs",
            )
        return self._cli

    def _submit(self) -> None:
        self._notice("submitting the Flower app")
        run_id = self._flower_cli().submit(to_run_config(self.config), self._federation_config())
        self._notice(f"Flower run {run_id} submitted")

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
        return flower_home.environment(self._flwr_home, flwr_home, self._app_environment)


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(address: Address, ca_cert: Path | None = None) -> bool:
    if ca_cert is None:
        opener, scheme = _LOOPBACK, "http"
    else:
        tls = ssl.create_default_context(cafile=str(ca_cert))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
        )
        scheme = "https"
    try:
        with opener.open(f"{scheme}://{address}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
