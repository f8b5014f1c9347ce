"""A run as one W&B run (`wandb.init` with the run's name, its sweep as the group), in WANDB_PROJECT
(default "fedtui"). Without an API key where W&B looks for one (WANDB_API_KEY, ~/.netrc) and no
WANDB_MODE chosen, it is written offline, as a fedtui run must never stop for a login prompt;
`wandb sync` uploads it later."""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from engine.core.status import ENDED_WELL

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run

    from engine.record.trackers.mirror import RunStart

DEFAULT_PROJECT = "fedtui"
DEFAULT_HOST = "https://api.wandb.ai"


class WandbTracker:
    name = "wandb"

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._notify = notify
        self._run: Run | None = None

    def start(self, start: RunStart) -> None:
        import wandb  # only for a run that uses it

        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            name=start.run.name,
            group=start.run.group,
            config=start.params,
            mode="offline" if _no_api_key() else None,
            reinit="create_new",  # a sweep's members are runs side by side in one process
            # nothing of W&B's on the terminal: a TUI may be drawing there
            settings=wandb.Settings(console="off", silent=True),
        )
        if self._run.offline:
            self._notify(
                f"W&B: no API key, so the run is written offline to "
                f"{Path(self._run.dir).parent} (wandb sync uploads it)"
            )

    def metrics(self, values: dict[str, float], step: int, wall_time: float) -> None:
        # `_timestamp` is W&B's own wall time of a step: the round's recorded end, not now
        self._require().log({**values, "_timestamp": wall_time}, step=step)

    def text(self, tag: str, text: str, step: int, wall_time: float) -> None:
        self._require().log({tag: text, "_timestamp": wall_time}, step=step)

    def finish(self, summary: dict[str, Any], wall_time: float) -> None:
        run = self._require()
        run.summary.update(summary)
        run.finish(exit_code=0 if summary["status"] in ENDED_WELL else 1)

    def location(self) -> str:
        run = self._require()
        return f"W&B run {run.name} ({'offline: ' + run.dir if run.offline else run.url})"

    def _require(self) -> Run:
        if self._run is None:
            raise RuntimeError("the W&B run has not started")
        return self._run


def _no_api_key() -> bool:
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return False
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is None
    except (OSError, netrc.NetrcParseError):  # no ~/.netrc at all
        return True
