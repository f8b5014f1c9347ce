"""Another user of this host reaches no API of a run's but the SuperLink's Fleet API: not the
Control API (which would run the app it is sent, as the user running fedtui), not a SuperNode's
Runtime API (a round's task, the model, and the reply), not even by naming one of fedtui's own
connections in an `X-Forwarded-For` header; the user running fedtui reaches them all. A real
SuperLink and SuperNode, as fedtui starts them; the other user is `nobody`."""

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from engine.flower import home as flower_home
from engine.flower.superlink import REFUSAL
from tests.other_user import SYSTEM_PYTHON, as_nobody, skip_unless_root_can_be_nobody
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

# POSTs an empty protobuf request (all fields default) to sys.argv[1] (an X-Forwarded-For of
# sys.argv[2] if given) and prints the answer's status and body; the system's Python, with
# nothing of the project's.
PROBE = """
import sys, urllib.error, urllib.request
headers = {"Content-Type": "application/protobuf"}
if len(sys.argv) > 2:
    headers["X-Forwarded-For"] = sys.argv[2]
request = urllib.request.Request(sys.argv[1], data=b"", method="POST", headers=headers)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    answer = opener.open(request, timeout=30)
    print(answer.status, answer.read().decode(errors="replace"))
except urllib.error.HTTPError as err:
    print(err.code, err.read().decode(errors="replace"))
"""
REFUSED = f"403 {REFUSAL.decode()}\n"


def from_nobody(url, *forwarded_for):
    probe = as_nobody(PROBE, url, *forwarded_for)
    out, err = probe.communicate(timeout=60)
    assert probe.returncode == 0, err
    return out


def from_this_user(url):
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", PROBE, url], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    return probe.stdout


def answers(port, path="/health"):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    """A SuperLink and one SuperNode, started as fedtui starts them: their ports."""
    skip_unless_root_can_be_nobody()
    root = tmp_path_factory.mktemp("flwr")
    flower_home.write_guards(root)
    link_port, node_port = flower_home.free_port(), flower_home.free_port()
    commands = {
        "superlink": [*flower_home.SUPERLINK, "--insecure", "--host", "127.0.0.1", "--port",
                      link_port, "--disable-runtime-dependency-installation"],
        "supernode": [*flower_home.SUPERNODE, "--insecure", "--superlink",
                      f"127.0.0.1:{link_port}", "--port", node_port, "--node-config",
                      "partition-id=0 num-partitions=1"],
    }  # fmt: skip
    started = []
    try:
        for name, command in commands.items():
            env = flower_home.environment(root, root / name, {})
            log = open(root / f"{name}.log", "wb")  # noqa: SIM115  closed with the process
            started.append((subprocess.Popen(list(map(str, command)), env=env, stdout=log,
                                             stderr=subprocess.STDOUT), log))  # fmt: skip
        wait_for(lambda: answers(link_port) and answers(node_port), timeout=120, interval=0.2)
        yield {"superlink": link_port, "supernode": node_port}
    finally:
        for process, log in reversed(started):
            process.terminate()
            process.wait(timeout=60)
            log.close()


def test_another_user_is_refused_the_control_api_the_user_running_fedtui_is_not(ports):
    url = f"http://127.0.0.1:{ports['superlink']}/v1/control/list-runs"

    assert from_nobody(url) == REFUSED
    assert from_this_user(url).split()[0] == "200"


def test_another_user_is_refused_the_servers_runtime_api(ports):
    url = f"http://127.0.0.1:{ports['superlink']}/v1/runtime/pull-messages"

    assert from_nobody(url) == REFUSED
    assert from_this_user(url) != REFUSED


def test_another_user_is_refused_a_supernodes_clientapp_api_the_user_running_fedtui_is_not(
    ports,
):
    url = f"http://127.0.0.1:{ports['supernode']}/v1/runtime/pull-task-input"

    assert from_nobody(url) == REFUSED
    assert from_this_user(url) != REFUSED  # Flower's own answer: no task for this token


def test_another_user_still_reaches_the_fleet_api_and_the_health_check(ports):
    """As another host's SuperNode would (`fedtui serve`)."""
    fleet = from_nobody(f"http://127.0.0.1:{ports['superlink']}/v1/fleet/get-run")
    health = as_nobody(
        "import urllib.request, sys; print(urllib.request.build_opener(urllib.request."
        "ProxyHandler({})).open(sys.argv[1], timeout=30).status)",
        f"http://127.0.0.1:{ports['superlink']}/health",
    ).communicate(timeout=60)[0]

    assert fleet != REFUSED
    assert health == "200\n"


@pytest.mark.parametrize("server", ["superlink", "supernode"])
def test_naming_a_connection_of_the_user_running_fedtui_in_a_header_does_not_help(ports, server):
    """uvicorn would take the client's address from X-Forwarded-For when the peer is
    loopback; the address of a socket the user running fedtui holds open would then pass."""
    with socket.create_connection(("127.0.0.1", ports[server])) as own:
        host, port = own.getsockname()
        url = f"http://127.0.0.1:{ports[server]}/v1/control/list-runs"
        if server == "supernode":
            url = f"http://127.0.0.1:{ports[server]}/v1/runtime/pull-task-input"

        assert from_nobody(url, f"{host}:{port}") == REFUSED


def test_the_probe_runs_as_another_user():
    skip_unless_root_can_be_nobody()
    out = as_nobody("import os; print(os.getuid())").communicate(timeout=60)[0]
    assert int(out) != os.getuid() and sys.executable != SYSTEM_PYTHON
