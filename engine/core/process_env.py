"""What the controller tells the processes it starts, through the environment they inherit.

Flower starts the ServerApp and the ClientApps itself (SuperLink or SuperNode, then SuperExec,
then the app), so besides Flower's run config the environment is the one way to reach them.
Every variable fedtui sets for them is named here, in a module that imports nothing heavy: the
controller uses it without loading Flower's apps or torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.core.config import RunConfig

# The ServerApp runs beside the SuperLink, on the controller's machine: it writes checkpoints and
# its log into the run folder.
RUN_DIR_ENV = "FEDTUI_RUN_DIR"
# JSON: where a resumed run goes on from (engine.run.resume.ResumeState); unset for a new run.
RESUME_ENV = "FEDTUI_RESUME"
# JSON: the checkpoint a fork starts from ({path, round}: its parent's round), its round 0.
START_ENV = "FEDTUI_START"
# `fedtui serve`: the clients join from other hosts, and the run waits this many seconds (a
# number) for all of them before round 0; unset for a run whose clients the controller starts.
JOIN_TIMEOUT_ENV = "FEDTUI_JOIN_TIMEOUT"
# The controller's event channel (engine.net.channel): its loopback address and its key.
EVENTS_ADDRESS_ENV = "FEDTUI_EVENTS_ADDRESS"
EVENTS_KEY_ENV = "FEDTUI_EVENTS_KEY"
# A client's warm worker listens on this Unix socket; its SuperNode's `flwr-clientapp` relay
# connects to it, and runs Flower's own entry point (the other variable) when none listens.
# engine.flower.relay reads them under the same names (it imports nothing of fedtui's).
WORKER_SOCKET_ENV = "FEDTUI_WORKER_SOCKET"
FLOWER_CLIENTAPP_ENV = "FEDTUI_FLOWER_CLIENTAPP"
# Every process of a run ends as soon as this PID (the controller's) is gone; engine.system.guard
# reads it under the same name.
CONTROLLER_PID_ENV = "FEDTUI_CONTROLLER_PID"


def for_server_app(
    run_dir: Path,
    resume: Mapping[str, Any] | None,
    join_timeout_s: float | None = None,
    start: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The variables the ServerApp reads back with `run_dir()`, `resume_state()`,
    `start_point()` and `join_timeout()`."""
    environment = {RUN_DIR_ENV: str(run_dir.resolve())}
    if resume is not None:
        environment[RESUME_ENV] = json.dumps(resume)
    if start is not None:
        environment[START_ENV] = json.dumps(start)
    if join_timeout_s is not None:
        environment[JOIN_TIMEOUT_ENV] = str(join_timeout_s)
    return environment


def run_dir() -> Path | None:
    """The run folder, when a fedtui controller started this process."""
    value = os.environ.get(RUN_DIR_ENV)
    return Path(value) if value else None


def resume_state() -> dict[str, Any] | None:
    """Where the run goes on from, or None for a run that starts at round 0."""
    return json.loads(os.environ.get(RESUME_ENV) or "null")


def start_point() -> dict[str, Any] | None:
    """The checkpoint a fork's round 0 is, or None for a run that starts from the model."""
    return json.loads(os.environ.get(START_ENV) or "null")


def join_timeout() -> float | None:
    """How long the clients of a served run have to join; None when they are not remote."""
    value = os.environ.get(JOIN_TIMEOUT_ENV)
    return float(value) if value else None


def threads_per_client(config: RunConfig) -> int:
    """Share the cores among the clients that train at once: N clients with default threads
    each oversubscribe them badly. Ray runs a virtual client on its `client_cpus` cores."""
    if config.threads_per_client > 0:
        return config.threads_per_client
    if config.backend == "simulation":
        return config.client_cpus
    return max(1, (os.cpu_count() or 1) // config.sampled_per_round)
