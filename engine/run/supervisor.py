"""What a run's supervisor thread does between its first and its last event.

    supervisor = RunSupervisor(config, run_dir, processes, ...)
    try:
        status = supervisor.run()        # until the ServerApp reports the end
    finally:
        supervisor.end_processes(grace_s)  # every process the run started, by PID
        supervisor.clean_up()            # NVML; what Flower left in /tmp and /dev/shm

`run()` prepares the data, has `FlowerDeployment` (engine.flower.deployment) start Flower, then
watches: a client whose processes die is started again (`ClientSupervisor`,
engine.run.client_supervisor), a dead SuperLink or ServerApp ends the run (`ServerGone`), and each
client's memory is sampled once a second. The controller (engine.run.controller) owns the record and
turns the outcome into the run's last events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core import events as ev, process_env
from engine.core.config import RunConfig
from engine.flower.deployment import FlowerDeployment, ServerGone
from engine.ml import data
from engine.net import federation
from engine.net.federation import ServerFiles, ServeSettings
from engine.run.client_supervisor import ClientSupervisor
from engine.run.resume import ResumeState
from engine.system.client_memory import ClientMemorySampler
from engine.system.gpu import GpuSampler
from engine.system.processes import ProcessTable

SERVERAPP_GONE_GRACE_S = 3.0
TICK_S = 0.25
SAMPLE_EVERY_S = 1.0


class RunSupervisor:
    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        processes: ProcessTable,
        *,
        app_environment: dict[str, str],
        resume: ResumeState | None,
        start: dict[str, Any] | None,
        serve: ServeSettings | None,
        server_files: ServerFiles | None,
        emit: Callable[[ev.Event], None],
        send_to_server: Callable[[dict[str, Any]], None],
        check_abort: Callable[[], None],
        server_outcome: Callable[[], ev.Event | None],
        current_round: Callable[[], int | None],
    ) -> None:
        """`check_abort` raises when the run must end now; `server_outcome` is the ServerApp's
        `run_finished` event once it has come. Nothing starts before `run()`."""
        self.config = config
        self.serve = serve
        self._run_dir = run_dir
        self._server_files = server_files
        self._processes = processes
        self._app_environment = {
            **process_env.for_server_app(
                run_dir, resume, serve.join_timeout_s if serve else None, start
            ),
            **app_environment,
        }
        self._emit = emit
        self._send_to_server = send_to_server
        self._check_abort = check_abort
        self._server_outcome = server_outcome
        self._current_round = current_round
        self._gpu: GpuSampler | None = None
        self._deployment: FlowerDeployment | None = None

    def run(self) -> str:
        """The run's status as the ServerApp reports it. Raises what ends it otherwise: the
        controller's abort, `FedtuiError` (bad input found late), `ServerGone`."""
        self._gpu = gpu = GpuSampler()
        self._deployment = deployment = FlowerDeployment(
            self.config,
            self._run_dir,
            self._processes,
            app_environment=self._app_environment,
            gpus=self.config.client_gpus or list(range(gpu.device_count)),
            notice=self._notice,
            check_abort=self._check_abort,
            serve=self.serve,
            server_files=self._server_files,
        )
        # A virtual client (simulation) or one on another host has no process here.
        local = self.config.backend == "deployment" and self.serve is None
        memory = ClientMemorySampler(gpu, self.config.num_clients if local else 0)
        if gpu.unavailable:
            self._notice(
                f"no NVIDIA GPU: VRAM unavailable ({gpu.unavailable}); showing host RSS per client"
            )
        self._notice("preparing data")
        data.prepare(self.config, progress=self._notice)
        self._emit(
            ev.make(
                ev.PARTITION_SUMMARY,
                partition=self.config.partition,
                clients=data.load_partition_summary(self.config),
            )
        )
        self._check_abort()
        if self.serve is not None and self.serve.insecure:
            self._emit(ev.make(ev.WARNING, message=federation.PLAIN_TEXT_WARNING))
        deployment.launch()
        if self.serve is not None:
            self._notice(
                "clients join with (I: the client's partition id): "
                + federation.join_command_line(self.serve, self._server_files)
            )
        clients = ClientSupervisor(
            deployment,
            self._processes,
            emit=self._emit,
            tell_server=self._send_to_server,
            current_round=self._current_round,
        )
        return self._watch(deployment, clients, memory)

    def end_processes(self, grace_s: float) -> None:
        """End every process the run started: SIGTERM, then SIGKILL after `grace_s`."""
        self._processes.terminate_all(grace_s)

    def clean_up(self) -> None:
        """Once every process has ended: close NVML, remove Flower's temporary home and
        whatever a killed ServerApp left in /dev/shm."""
        if self._gpu is not None:
            self._gpu.close()
        if self._deployment is not None:
            self._deployment.remove_flwr_home()

    def _watch(
        self, deployment: FlowerDeployment, clients: ClientSupervisor, memory: ClientMemorySampler
    ) -> str:
        """Wait until the ServerApp reports the end, a server process dies, or the user aborts;
        a client that dies is started again meanwhile."""
        serverapp_gone_at: float | None = None
        next_sample = time.monotonic()
        while True:
            self._processes.scan()
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY_S
                self._sample_memory(memory)
            self._check_abort()
            deployment.check_superlink_alive()
            clients.check()
            outcome = self._server_outcome()
            if outcome is not None:
                return outcome["status"]
            serverapps = [p for p in self._processes.all() if p.role == "serverapp"]
            if serverapps and not any(p.alive for p in serverapps):
                serverapp_gone_at = serverapp_gone_at or time.monotonic()
                if time.monotonic() - serverapp_gone_at > SERVERAPP_GONE_GRACE_S:
                    raise ServerGone(
                        "the ServerApp exited without finishing the run "
                        "(see logs/serverapp.log and logs/superlink.log)"
                    )
            time.sleep(TICK_S)

    def _sample_memory(self, memory: ClientMemorySampler) -> None:
        owners = {p.pid: p.client for p in self._processes.alive() if p.client is not None}
        for event in memory.sample(owners):
            self._emit(event)

    def _notice(self, message: str) -> None:
        self._emit(ev.make(ev.NOTICE, message=message))
