"""fedtui's SuperNode is Flower's, with the idle poll's hard-coded 3 s sleep cut to POLL_S
(engine.flower.supernode)."""

import sys
import time

from flwr.supernode import start_client_internal

from engine.flower import supernode


def test_flowers_own_entry_runs_with_short_sleeps_in_its_polling_module(monkeypatch):
    seen = []
    monkeypatch.setattr(start_client_internal, "time", time)  # put back after the test
    monkeypatch.setattr(sys, "argv", ["python -m engine.flower.supernode", "--insecure"])
    monkeypatch.setattr(
        supernode, "flower_supernode", lambda: seen.append(start_client_internal.time)
    )

    supernode.main()

    (polling_time,) = seen
    assert isinstance(polling_time, supernode.ShortSleeps)
    assert sys.argv == ["flower-supernode", "--insecure"]  # Flower parses the same arguments
    assert polling_time.monotonic is time.monotonic  # all but sleep is the real module
    started = time.monotonic()
    polling_time.sleep(3)  # Flower's idle poll
    assert time.monotonic() - started < 2.0
