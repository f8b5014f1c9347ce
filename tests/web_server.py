"""`fedtui web` as a real process on a free port, and a check that nothing it started outlives
it: every process of its tree carries a mark in its environment, which an orphan keeps."""

import contextlib
import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field

from tests.process_checks import processes_with
from tests.waiting import wait_for

SEED = "seed-opt350m-codeparrot-fedprox-mu0.1"
_MARK = "FEDTUI_WEB_TEST"


@dataclass
class Served:
    process: subprocess.Popen
    mark: str
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL `fedtui web` printed, with its token."""
        return wait_for(self._printed_url, timeout=60)

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.split("?token=", 1)[1]

    def apps(self) -> list[int]:
        """The app processes it serves, one per open page."""
        return [
            pid
            for pid, command in processes_with(_MARK, self.mark)
            if "tui.cli" in command and pid != self.pid
        ]

    @property
    def pid(self) -> int:
        return self.process.pid

    def _printed_url(self):
        ended = self.process.poll() is not None
        found = next(
            (m.group(0) for line in self.lines if (m := re.search(r"http://\S+", line))), None
        )
        assert found or not ended, f"fedtui web ended: {''.join(self.lines)}"
        return found


def _read(process, lines):
    for line in process.stdout:
        lines.append(line)


@contextlib.contextmanager
def fedtui_web(*args, host="127.0.0.1", cwd=None):
    """`fedtui web --host HOST --port 0 ARGS`; on the way out it is ended (SIGTERM) if still
    running, and nothing it started may be left 10 s later."""
    mark = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "web", "--host", host, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, _MARK: mark},
    )
    served = Served(process, mark)
    threading.Thread(target=_read, args=(process, served.lines), daemon=True).start()
    try:
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
        wait_for(lambda: not processes_with(_MARK, mark), timeout=10)
