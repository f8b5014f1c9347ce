"""Fail fast, with a reason, when a Hugging Face Hub name cannot load.

transformers and datasets retry an unreachable Hub for tens of seconds before giving up with a
long traceback; a name that is neither cached nor reachable is known to fail in milliseconds.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from huggingface_hub.constants import HF_HUB_CACHE

from engine.core.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}


def check_hub_name(name: str, kind: str) -> None:
    """Raise ConfigError unless `name` (a `kind` of "model" or "dataset") is in the local Hub
    cache or the Hub can be reached."""
    if _cached(name, kind):
        return
    reason = offline_reason()
    if reason:
        raise ConfigError(
            f"cannot load {kind} {name!r}: it is not in the local Hugging Face cache and {reason}"
        )


def offline_reason() -> str | None:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as err:
        return (
            f"the Hub ({host}) cannot be reached ({err.strerror or err}); is this machine offline?"
        )
    return None


def _cached(name: str, kind: str) -> bool:
    folder = os.path.join(
        os.environ.get("HF_HUB_CACHE", HF_HUB_CACHE), f"{kind}s--{name.replace('/', '--')}"
    )
    return os.path.isdir(os.path.join(folder, "snapshots"))
