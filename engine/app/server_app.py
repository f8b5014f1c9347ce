"""The ServerApp (Flower's entry point): logs to the run folder, then has `FederatedRun`
(engine.app.server.federated_run) run the rounds; a failure is reported as the run's end.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from engine.app.run_config import config_from_run_config
from engine.app.server.federated_run import FederatedRun
from engine.core import events as ev, process_env
from engine.core.status import Status
from engine.net.channel import EventPublisher

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_dir = process_env.run_dir()
    if run_dir is not None:
        _log_to_file(run_dir / "logs" / "serverapp.log")
    config = config_from_run_config(context.run_config)
    publisher = EventPublisher.from_env(role="server")
    try:
        FederatedRun(
            config,
            grid,
            publisher,
            run_dir,
            process_env.resume_state(),
            join_timeout_s=process_env.join_timeout(),
            start=process_env.start_point(),
        ).run()
    except Exception as err:
        if publisher:
            publisher.publish(ev.ERROR, source="serverapp", message=f"ServerApp failed: {err!r}")
            publisher.publish(ev.RUN_FINISHED, status=Status.FAILED)
        raise
    finally:
        if publisher:
            publisher.close()


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("flwr", "fedtui"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
