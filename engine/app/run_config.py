"""The run's config inside Flower's run config, so every app (on any host) gets the same one."""

from __future__ import annotations

import base64
import json

from engine.core.config import RunConfig
from engine.core.config_checks import config_from_dict

RUN_CONFIG_KEY = "fedtui-config"


def to_run_config(config: RunConfig) -> dict[str, str]:
    encoded = base64.b64encode(json.dumps(config.to_dict()).encode()).decode()
    return {RUN_CONFIG_KEY: encoded}


def config_from_run_config(run_config: dict) -> RunConfig:
    return config_from_dict(json.loads(base64.b64decode(run_config[RUN_CONFIG_KEY])))
