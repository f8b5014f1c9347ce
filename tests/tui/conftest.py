import time

import pytest


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Times on screen are local: pin the zone so screens are the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
