"""A run as TensorBoard event files in one folder (a live run's `runs/<id>/tensorboard/`), written
by the SummaryWriter that Hugging Face's Trainer uses too (torch's, on TensorBoard's own writer)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from engine.record.trackers.mirror import RunStart


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writer: SummaryWriter | None = None

    def start(self, start: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy: only for a run that uses it

        self._writer = SummaryWriter(str(self.folder))
        rows = "\n".join(f"| {key} | {value} |" for key, value in start.params.items())
        self._require().add_text(
            "config", f"| key | value |\n|---|---|\n{rows}", 0, walltime=start.wall_time
        )

    def metrics(self, values: dict[str, float], step: int, wall_time: float) -> None:
        writer = self._require()
        for tag, value in values.items():
            writer.add_scalar(tag, value, step, walltime=wall_time)
        writer.flush()  # each round as it ends, not at the writer's own pace (2 minutes)

    def text(self, tag: str, text: str, step: int, wall_time: float) -> None:
        self._require().add_text(tag, text, step, walltime=wall_time)

    def finish(self, summary: dict[str, Any], wall_time: float) -> None:
        lines = "\n\n".join(f"{key}: {value}" for key, value in summary.items())
        writer = self._require()
        writer.add_text("summary", lines, summary["rounds_completed"], walltime=wall_time)
        writer.close()

    def location(self) -> str:
        return f"TensorBoard event files in {self.folder} (tensorboard --logdir {self.folder})"

    def _require(self) -> SummaryWriter:
        if self._writer is None:
            raise RuntimeError("the TensorBoard writer has not started")
        return self._writer
