"""Another account on this machine, for the tests of what it may reach: `nobody`, through
`runuser`, running the system's Python (it cannot read the project's virtual environment)."""

import os
import shutil
import subprocess

import pytest

NOBODY_UID = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def skip_unless_root_can_be_nobody():
    if os.geteuid() != 0:
        pytest.skip("running a process as another user needs root")
    if shutil.which("runuser") is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs runuser and /usr/bin/python3 to run a process as nobody")


def as_nobody(source, *args, **popen):
    """`source` run by the system's Python as `nobody`, with `args` as its sys.argv[1:]."""
    return subprocess.Popen(
        ["runuser", "-u", "nobody", "--", SYSTEM_PYTHON, "-I", "-c", source, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        **popen,
    )
