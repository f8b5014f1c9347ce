"""Waiting for something another process, thread or the app under test does."""

import asyncio
import time


def wait_for(predicate, timeout=10.0, interval=0.02):
    """The first truthy value of `predicate()`; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {predicate}"
        time.sleep(interval)
    return result


async def until(predicate, timeout=30.0, interval=0.02):
    """`wait_for` inside a Textual Pilot test: the app runs (in this event loop) while it
    polls."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {predicate}"
        await asyncio.sleep(interval)
    return result
