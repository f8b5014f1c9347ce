"""Flower's command line (`flwr`) against one run's SuperLink: SuperNode keys registered, the
Flower app submitted (engine.flower.deployment starts the processes it talks to).

Its FLWR_HOME holds one connection, named CONNECTION_NAME, to the run's SuperLink; each command's
output is appended to a log in the run folder, which a failure names.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from engine.flower import home as flower_home
from engine.net.federation import Address
from engine.system.processes import die_with_parent

APP_DIR = Path(__file__).parents[1] / "app" / "fab"
CONNECTION_NAME = "fedtui"
TIMEOUT_S = 120.0


class FlowerCli:
    def __init__(
        self,
        home: Path,
        superlink: Address,
        ca_cert: Path | None,
        environment: Callable[[Path], dict[str, str]],
        logs: Path,
    ) -> None:
        """`environment(flwr_home)`: what a Flower program of the run runs with; `ca_cert`:
        None for plain text."""
        self.home = home
        self._environment = environment
        self._logs = logs
        home.mkdir(parents=True, exist_ok=True)
        trust = f'root-certificates = "{ca_cert.absolute()}"\n' if ca_cert else "insecure = true\n"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n'
            f'[superlink.{CONNECTION_NAME}]\naddress = "{superlink}"\n' + trust,
            encoding="utf-8",
        )

    def register_supernode(self, public_key: Path) -> None:
        """Flower's SuperNode authentication: a node may join once its key is registered."""
        self._run(
            ["supernode", "register", str(public_key), CONNECTION_NAME],
            "flwr-register.log",
            f"flwr supernode register {public_key.name}",
        )

    def submit(self, run_config: dict[str, str], federation_config: list[str]) -> str:
        """Submit the Flower app with `run_config`; Flower's run id."""
        overrides = self.home / "run-config.toml"
        overrides.write_text("".join(f'{key} = "{value}"\n' for key, value in run_config.items()))
        completed = self._run(
            ["run", str(APP_DIR), CONNECTION_NAME, "--run-config", str(overrides),
             *federation_config, "--format", "json"],
            "flwr-run.log",
            "flwr run",
        )  # fmt: skip
        try:
            reply = json.loads(completed.stdout)
        except json.JSONDecodeError:
            reply = {}
        if not reply.get("success", False):
            output = (completed.stdout + completed.stderr).strip()
            raise RuntimeError(f"flwr run failed (see logs/flwr-run.log): {output[-300:]}")
        return str(reply.get("run-id"))

    def _run(self, args: list[str], log_name: str, what: str) -> subprocess.CompletedProcess[str]:
        """`flwr args`, its output appended to logs/`log_name`; RuntimeError naming `what` when
        it fails."""
        completed = subprocess.run(
            [flower_home.program("flwr"), *args],
            env=self._environment(self.home),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        output = completed.stdout + completed.stderr
        with open(self._logs / log_name, "a") as log:
            log.write(output)
        if completed.returncode != 0:
            raise RuntimeError(f"{what} failed (see logs/{log_name}): {output.strip()[-300:]}")
        return completed
