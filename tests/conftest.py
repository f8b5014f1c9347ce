import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """One tokenizer/sample cache for the whole session, never the user's own."""
    if "FEDTUI_CACHE_DIR" not in os.environ:
        os.environ["FEDTUI_CACHE_DIR"] = str(tmp_path_factory.mktemp("fedtui-cache"))
    yield Path(os.environ["FEDTUI_CACHE_DIR"])
