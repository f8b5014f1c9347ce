import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """One tokenizer/sample cache for the whole session, never the user's own."""
    if "FEDTUI_CACHE_DIR" not in os.environ:
        os.environ["FEDTUI_CACHE_DIR"] = str(tmp_path_factory.mktemp("fedtui-cache"))
    yield Path(os.environ["FEDTUI_CACHE_DIR"])


@pytest.fixture
def serverapp_identity():
    """Messages are built inside a ServerApp process, which knows its run, node and task."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None
