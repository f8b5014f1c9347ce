"""A federation across three hosts, built on this machine from network namespaces: `fedtui serve`
in one, `fedtui join` in the two others, over TLS with SuperNode authentication. Beside the two
authorised clients, a client whose key the server does not list and a plain-text client try to
join: both are turned away, and the run goes on without them.

    server 10.213.0.1 (bridge)  ── veth ──  host A 10.213.0.2: client 0, the stranger's key
                                ── veth ──  host B 10.213.0.3: client 1, the plain-text client
"""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from engine.core import events as ev
from engine.flower.home import free_port
from engine.flower.superlink import REFUSAL
from engine.net import federation
from engine.record.run_folders import EVENTS_FILE
from tests.e2e.test_faults import processes_of
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

SUBNET = "10.213.0"
PORT = 9092
FEDTUI = [sys.executable, "-m", "tui.cli"]
RUN = ["--set", "num_clients=2", "--set", "rounds=2", "--set", "samples_per_client=32",
       "--set", "eval_samples=32"]  # fmt: skip


# What another host gets from the server's Flower Control API (which runs the apps it is sent).
CONTROL_PROBE = """
import ssl, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"", method="POST")
try:
    answer = urllib.request.urlopen(request, context=ssl.create_default_context(cafile=sys.argv[2]))
    print(answer.status, answer.read().decode())
except urllib.error.HTTPError as err:
    print(err.code, err.read().decode())
"""


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _can_build_namespaces():
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"fedtui-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "delete", probe)
    except (subprocess.CalledProcessError, OSError) as err:
        return f"`ip netns add` failed: {err}"
    return None


@pytest.fixture(scope="module")
def hosts():
    """Three namespaces with loopback up: the server's, with a bridge, and two hosts wired to
    it; their names (server, A, B). Removed afterwards."""
    why_not = _can_build_namespaces()
    if why_not:
        pytest.skip(f"multihost: {why_not}")
    tag = os.getpid() % 100000
    names = [f"fts{tag}", f"fta{tag}", f"ftb{tag}"]
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        server = names[0]
        _ip("-n", server, "link", "add", "br0", "type", "bridge")
        _ip("-n", server, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        _ip("-n", server, "link", "set", "br0", "up")
        for number, host in enumerate(names[1:], start=2):
            outer, inner = f"fo{tag}{number}", f"fi{tag}{number}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", server)
            _ip("link", "set", inner, "netns", host)
            _ip("-n", server, "link", "set", outer, "master", "br0")
            _ip("-n", server, "link", "set", outer, "up")
            _ip("-n", host, "addr", "add", f"{SUBNET}.{number}/24", "dev", inner)
            _ip("-n", host, "link", "set", inner, "up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _in(namespace, *args, cwd):
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *FEDTUI, *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def federation_run(hosts, tmp_path_factory):
    """The served run with its two clients and the two turned away: each one's exit code and
    output, the run's events, and the processes left after."""
    server_ns, host_a, host_b = hosts
    folder = tmp_path_factory.mktemp("multihost")
    keys = folder / "federation"
    stranger_key = folder / "stranger.key"
    federation.generate_client_key(stranger_key)
    address = f"{SUBNET}.1:{PORT}"
    started = []
    try:
        serve = _in(server_ns, "serve", *RUN, "--address", address, "--federation", str(keys),
                    "--headless", cwd=folder)  # fmt: skip
        started.append(serve)

        def serving():
            assert serve.poll() is None, serve.communicate()[0][-3000:]
            runs = list((folder / "runs").glob(f"*/{EVENTS_FILE}"))
            return runs and "clients join with" in runs[0].read_text() and runs[0]

        events = wait_for(serving, 300, interval=0.2)
        control = subprocess.run(
            ["ip", "netns", "exec", host_a, sys.executable, "-c", CONTROL_PROBE,
             f"https://{address}/v1/control/list-runs", str(keys / "ca.pem")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

        def join(namespace, *args):
            started.append(_in(namespace, "join", address, *args, cwd=folder))
            return started[-1]

        clients = [
            join(host, "--partition-id", str(client), "--ca", str(keys / "ca.pem"),
                 "--key", str(federation.client_key(keys, client)))
            for client, host in enumerate((host_a, host_b))
        ]  # fmt: skip
        stranger = join(host_a, "--partition-id", "1", "--ca", str(keys / "ca.pem"),
                        "--key", str(stranger_key))  # fmt: skip
        plain = join(host_b, "--partition-id", "0", "--insecure", "--wait", "15")
        outputs = {
            name: (process.communicate(timeout=600)[0], process.returncode)
            for name, process in [("serve", serve), ("client 0", clients[0]),
                                  ("client 1", clients[1]), ("stranger", stranger),
                                  ("plain", plain)]
        }  # fmt: skip
        outputs["control API from host A"] = (control.stdout + control.stderr, control.returncode)
        left = [found for process in started for found in processes_of(process.pid)]
        yield outputs, ev.read_events(events), left
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()


@pytest.mark.multihost
def test_two_hosts_join_a_served_run_and_train_both_rounds(federation_run):
    outputs, events, left = federation_run
    serve_out, serve_code = outputs["serve"]

    assert serve_code == 0, serve_out[-3000:]
    assert "run completed: 2 rounds" in serve_out
    joined = {e["client"]: e["address"] for e in events if e["type"] == ev.CLIENT_JOINED}
    assert joined == {0: f"{SUBNET}.2", 1: f"{SUBNET}.3"}
    done = sorted((e["round"], e["client"]) for e in events if e["type"] == ev.CLIENT_ROUND_DONE)
    assert done == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for event in events:
        if event["type"] == ev.CLIENT_ROUND_DONE:  # the remote clients' own figures
            assert event["examples"] > 0 and event["seconds"] > 0 and event["peak_rss_bytes"] > 0
    for client in ("client 0", "client 1"):
        out, code = outputs[client]
        assert code == 0, out
        assert "round 2: trained" in out and "run completed: leaving" in out
    assert left == []


@pytest.mark.multihost
def test_a_stranger_key_and_a_plain_text_client_are_turned_away(federation_run):
    outputs, events, _ = federation_run

    stranger_out, stranger_code = outputs["stranger"]
    assert stranger_code == 1
    assert "the server refused this client's key" in stranger_out
    plain_out, plain_code = outputs["plain"]
    assert plain_code == 1
    assert f"no answer from {SUBNET}.1:{PORT} within 15 s" in plain_out
    assert not any(e["type"] == ev.ERROR for e in events)  # the run never saw them


@pytest.mark.multihost
def test_another_host_reaches_the_fleet_api_but_not_the_control_api(federation_run):
    outputs, _, _ = federation_run
    assert outputs["control API from host A"] == (f"403 {REFUSAL.decode()}\n", 0)


def test_clients_that_never_join_fail_the_run_by_name_when_the_join_timeout_is_up(tmp_path):
    """On loopback, in plain text: the record says so, and who never came."""
    address = f"127.0.0.1:{free_port()}"
    serve = subprocess.Popen(
        [*FEDTUI, "serve", *RUN, "--address", address, "--insecure", "--join-timeout", "10",
         "--headless"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = serve.communicate(timeout=600)[0]

    assert serve.returncode == 1, out[-3000:]
    assert "client(s) 0, 1 did not join within 10 s" in out
    (events_file,) = (tmp_path / "runs").glob(f"*/{EVENTS_FILE}")
    events = ev.read_events(events_file)
    assert [e["missing"] for e in events if e["type"] == ev.WAITING_FOR_CLIENTS][0] == [0, 1]
    assert any(e["type"] == ev.WARNING and "plain text" in e["message"] for e in events)
    notices = [e["message"] for e in events if e["type"] == ev.NOTICE]
    assert f"fedtui join {address} --partition-id I --insecure" in "\n".join(notices)
    assert events[-1]["status"] == "failed"
    assert processes_of(serve.pid) == []


def test_ctrl_c_ends_a_joining_client_and_everything_it_started(tmp_path):
    """Before any server answers: the SuperNode and the worker are up, then Ctrl+C."""
    join = subprocess.Popen(
        [*FEDTUI, "join", f"127.0.0.1:{free_port()}", "--partition-id", "0", "--insecure"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: len(processes_of(join.pid)) >= 2, 120, interval=0.2)  # SuperNode, worker

    join.send_signal(signal.SIGINT)
    out = join.communicate(timeout=60)[0]

    assert join.returncode == 130, out
    assert out.splitlines()[-1] == "fedtui join: stopped here: leaving the run"
    assert wait_for(lambda: processes_of(join.pid) == [], 10)


def test_a_served_run_goes_on_with_serve_resume_once_its_clients_join_again(tmp_path):
    """On loopback, in plain text: one round served, then a second one with `--resume`."""

    def served(*args):
        address = f"127.0.0.1:{free_port()}"
        serve = subprocess.Popen(
            [*FEDTUI, "serve", *args, "--address", address, "--insecure", "--headless"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        clients = [
            subprocess.Popen(
                [*FEDTUI, "join", address, "--partition-id", str(client), "--insecure"],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for client in (0, 1)
        ]
        try:
            outputs = [process.communicate(timeout=600)[0] for process in (serve, *clients)]
        finally:
            for process in (serve, *clients):
                process.kill()
        assert [process.returncode for process in (serve, *clients)] == [0, 0, 0], outputs
        assert processes_of(serve.pid) == []

    served(*RUN, "--set", "rounds=1")
    (run_dir,) = (tmp_path / "runs").iterdir()
    served("--resume", str(run_dir), "--set", "rounds=2")

    events = ev.read_events(run_dir / EVENTS_FILE)
    assert [e["from_round"] for e in events if e["type"] == ev.RUN_RESUMED] == [1]
    assert [e["round"] for e in events if e["type"] == ev.ROUND_DONE] == [0, 1, 2]
    joined = [e for e in events if e["type"] == ev.CLIENT_JOINED]
    assert sorted(e["client"] for e in joined) == [0, 0, 1, 1]  # both clients, both times
    assert events[-1]["status"] == "completed"
