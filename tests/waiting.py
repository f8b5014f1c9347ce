"""Waiting for something another process or thread does."""

import time


def wait_for(predicate, timeout=10.0, interval=0.02):
    """The first truthy value of `predicate()`; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)
    return result
