"""Bad input, as users make it. Every mistake exits 2 with one line on stderr and no traceback,
before a process starts or a run folder exists, and leaves every file as it was. A damaged but
readable run record is read past its damage, with one warning line."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine.run.sweep
import tui.join
from engine.core import events as ev
from engine.record import run_lock
from engine.run.controller import RunController
from tests.factories import simple_run_events, write_run
from tui import cli, lifecycle

RUN = "run --headless --runs-dir runs"  # every run below goes to ./runs, which must stay empty


def run_cli(capsys, argv):
    try:
        code = cli.main(argv.split() if isinstance(argv, str) else argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root`, with the bytes of each file."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


# -- what a mistake finds on disk (the test's folder is the working folder) ---------------------


def on_disk(tree: dict[str, str | bytes]):
    """Files by path (a path ending in / is a folder)."""

    def make(root: Path) -> None:
        for name, content in tree.items():
            path = root / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)

    return make


def a_run(
    name, status="completed", finished=True, config_rounds=None, checkpoint_round=None, served=False
):
    """A recorded run; a config.toml with `config_rounds`, a last checkpoint of its round. An
    unfinished run is live: its controller (this test's process) holds it. A `served` run waited
    for its clients to join from other hosts."""

    def make(root: Path) -> None:
        events = simple_run_events(run_id=Path(name).name, status=status)
        if served:
            events.insert(1, dict(type_=ev.WAITING_FOR_CLIENTS, joined=[], missing=[0, 1]))
        folder = write_run(root / name, events if finished else events[:-1])
        if not finished:
            run_lock.hold(folder)
        if config_rounds is not None:
            (folder / "config.toml").write_text(f"rounds = {config_rounds}\n")
        if checkpoint_round is not None:
            (folder / "checkpoints" / "last").mkdir(parents=True)
            info = {"kind": "last", "round": checkpoint_round}
            (folder / "checkpoints" / "last" / "fedtui-checkpoint.json").write_text(
                json.dumps(info)
            )

    return make


def both(*makers):
    def make(root: Path) -> None:
        for maker in makers:
            maker(root)

    return make


MODEL = {
    "model/config.json": json.dumps({"model_type": "opt", "max_position_embeddings": 128}),
    "model/model.safetensors": "",
    "model/tokenizer.json": "{}",
}


def model_with(changes=None):
    """MODEL with files replaced (a str) or left out (None)."""
    tree = dict(MODEL)
    for name, content in (changes or {}).items():
        tree.pop(f"model/{name}")
        if content is not None:
            tree[f"model/{name}"] = content
    return on_disk(tree)


def jsonl(rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


CODE = "def f(x):\n    return x * 2\n" * 60  # ~1.7 KB: dozens of 64-token samples
HUB_CONFIG = json.dumps({"model_type": "gpt2", "n_positions": 32})
CACHED_HUB_MODEL = on_disk(
    {
        "hub/models--org--small/refs/main": "abc",
        "hub/models--org--small/snapshots/abc/config.json": HUB_CONFIG,
    }
)
ANOTHER_TOOLS_LINES = jsonl([{"hello": "world"}, {"level": "info"}])


def mistake(id, argv, says, prepare=None, **env):
    return pytest.param(argv, says, prepare or (lambda root: None), env, id=id)


def setting(id, overrides, says, prepare=None, **env):
    """A run started with `--set` for each of `overrides` (space-separated)."""
    argv = RUN + "".join(f" --set {override}" for override in overrides.split())
    return mistake(id, argv, says, prepare, **env)


def model_folder(id, changes, says):
    return setting(id, "model=model", says, model_with(changes))


def record(id, command, content, says):
    """`command` of a run folder old/r whose events.jsonl holds `content`."""
    return mistake(id, f"{command} old/r", says, on_disk({"old/r/events.jsonl": content}))


STOPPED = a_run("old/stopped", status="stopped", config_rounds=4, checkpoint_round=2)
SERVED = a_run("old/served", status="stopped", config_rounds=4, checkpoint_round=2, served=True)
CODE_FILE = on_disk({"code.jsonl": jsonl([{"content": CODE}] * 3)})
ONE_SOURCE = on_disk({"code.jsonl": jsonl([{"content": CODE, "repo_name": "one/repo"}] * 40)})
NEWER = jsonl([{"v": 99, "t": 1, "type": "notice", "message": "x"}])

MISTAKES = [
    # config: keys, types, values
    setting("unknown key", "epochs=3", "unknown config key 'epochs'"),
    setting("misspelt key", "num_client=3", "did you mean 'num_clients'?"),
    setting("word for a number", "rounds=five", "'rounds' must be int, got 'five'"),
    setting("unknown strategy", "strategy=fedsgd", "must be one of fedprox,"),
    setting("zero learning rate", "learning_rate=0", "'learning_rate' must be > 0"),
    setting(
        "more required than clients",
        "num_clients=2 min_clients=3",
        "'min_clients' must be at most the clients sampled per round (2)",
    ),
    setting(
        "more sampled than clients",
        "num_clients=4 clients_per_round=5",
        "'clients_per_round' must be at most num_clients (4)",
    ),
    setting(
        "more required than sampled",
        "num_clients=4 clients_per_round=2 min_clients=3",
        "'min_clients' must be at most the clients sampled per round (2)",
    ),
    setting("unknown backend", "backend=ray", "'backend' must be one of deployment, simulation"),
    setting(
        "bulyan with too few clients",
        "strategy=bulyan num_clients=6 num_malicious_nodes=1",
        "strategy bulyan with num_malicious_nodes=1 needs at least 7 replies a round",
    ),
    setting("krum with two clients", "strategy=krum", "strategy krum with num_malicious_nodes=0"),
    setting("trimming half the replies", "beta=0.5", "'beta' (the share trimmed at each end) must"),
    setting("a second moment decay of 1", "beta_2=1", "'beta_2' must be < 1, got 1.0"),
    setting(
        "scaffold by Flower's aggregation",
        "strategy=scaffold aggregation=flower",
        "strategy scaffold is fedtui's own (Flower has none)",
    ),
    # sweeps
    mistake("sweep without a grid", "sweep --headless", "a sweep needs at least one --grid"),
    mistake("grid without values", "sweep --grid proximal_mu", "--grid expects KEY=V1,V2,..."),
    mistake("grid with an empty value", "sweep --grid seed=1,,2", "--grid expects KEY=V1,V2,..."),
    mistake("grid key twice", "sweep --grid seed=1,2 --grid seed=3", "--grid names 'seed' twice"),
    mistake(
        "grid of an unknown key",
        "sweep --grid mu=0.1,1",
        "sweep member mu=0.1: unknown config key 'mu'",
    ),
    mistake(
        "grid value of the wrong type",
        "sweep --grid rounds=2,two",
        "sweep member rounds=two: config key 'rounds' must be int",
    ),
    mistake("no member at once", "sweep --grid seed=1,2 --parallel 0", "--parallel must be"),
    setting("device torch lacks", "device=gpu", "must be auto, cpu, cuda or cuda:N"),
    setting("table set to a value", "early_stopping=true", "must be a table"),
    setting("unknown key in a table", "lora.rank=4", "unknown config key 'lora.rank'"),
    setting("GPU index not in a list", "client_gpus=0", "must be a list of GPU indices"),
    setting("--set without =", "rounds", "--set expects key=value, got 'rounds'"),
    # config files and presets
    mistake("missing config file", f"{RUN} my.toml", "config file not found: my.toml"),
    mistake("misspelt preset", f"{RUN} defualt", "no config file or preset named 'defualt'"),
    mistake("invalid TOML", f"{RUN} my.toml", "invalid TOML", on_disk({"my.toml": "rounds = = 3"})),
    mistake(
        "string in a file", f"{RUN} my.toml", "must be int", on_disk({"my.toml": 'rounds = "2"'})
    ),
    mistake("binary file", f"{RUN} my.toml", "cannot read", on_disk({"my.toml": b"\xff\xfe\x00"})),
    # command line
    mistake("unknown command", "frobnicate", "invalid choice: 'frobnicate'"),
    mistake("unknown flag", "run --fast", "unrecognized arguments: --fast"),
    mistake("export without a run", "export", "the following arguments are required: RUN"),
    mistake("unknown format", "export fedavg --format xml", "invalid choice: 'xml'"),
    mistake("replay of nothing", "replay", "the following arguments are required: RUN"),
    mistake("runs dir a file", RUN, "--runs-dir is not a folder", on_disk({"runs": "notes"})),
    mistake(
        "runs dir under a file",
        "run --headless --runs-dir notes.txt/runs",
        "notes.txt is a file",
        on_disk({"notes.txt": "notes"}),
    ),
    # --resume
    mistake("resume of a missing run", "run --resume runs/gone", "not a run folder: runs/gone"),
    mistake(
        "resume of a completed run without more rounds",
        "run --resume old/done",
        "done already has 2 of 2 rounds; --set rounds=N to go further",
        a_run("old/done", config_rounds=2, checkpoint_round=2),
    ),
    mistake(
        "resume of a running run",
        "run --resume old/live",
        f"run live is running (controller pid {os.getpid()})",
        a_run("old/live", finished=False),
    ),
    mistake("resume with a config", "run default --resume old/stopped", "drop CONFIG", STOPPED),
    mistake(
        "resume with another model",
        "run --resume old/stopped --set model=other",
        "a resumed run can only change rounds,",
        STOPPED,
    ),
    mistake(
        "resume of a run at its last round",
        "run --resume old/stopped --set rounds=2",
        "already has 2 of 2 rounds",
        STOPPED,
    ),
    mistake(
        "resume of a served run on this machine",
        "run --resume old/served",
        "run served was served to clients on other hosts: go on with fedtui serve --resume",
        SERVED,
    ),
    mistake(
        "serve the resume of a run trained on this machine",
        "serve --headless --insecure --resume old/stopped",
        "run stopped was trained by clients on this machine: go on with fedtui run --resume",
        STOPPED,
    ),
    mistake(
        "resume onto a GPU that is not there",
        "run --resume old/stopped --set device=cuda:99",
        "device='cuda:99', but",
        STOPPED,
    ),
    # devices
    setting("GPU index beyond the machine", "device=cuda:99", "device='cuda:99', but"),
    setting("GPU index in superscript", "device=cuda:²", "must be auto, cpu, cuda or cuda:N"),
    setting("client GPUs beyond the machine", "client_gpus=[0,99]", "99, but this machine has"),
    # models
    setting("missing model folder", "model=./models/opt", "model folder not found: ./models/opt"),
    setting(
        "model folder misspelt",
        "model=models/opt",
        "HF_HUB_OFFLINE is set (nor is there a models/opt here)",
        on_disk({"models/": ""}),
    ),
    setting(
        "weights file as the model",
        "model=model.safetensors",
        "is a file; give a save_pretrained folder",
        on_disk({"model.safetensors": ""}),
    ),
    model_folder("no config.json", {"config.json": None}, "(no config.json)"),
    model_folder("garbled config.json", {"config.json": "{"}, "is not readable JSON"),
    model_folder("config.json of no model", {"config.json": "{}"}, "has no model_type"),
    model_folder("no weights", {"model.safetensors": None}, "has no weights"),
    model_folder("no tokenizer", {"tokenizer.json": None}, "has no tokenizer"),
    setting(
        "LoRA adapters as the model",
        "model=adapter",
        "holds LoRA adapters only",
        on_disk({"adapter/adapter_config.json": "{}", "adapter/adapter_model.safetensors": ""}),
    ),
    setting("Hub model offline", "model=facebook/opt-350m", "HF_HUB_OFFLINE is set"),
    setting(
        "Hub unreachable",
        "model=facebook/opt-350m",
        "the Hub (127.0.0.1) cannot be reached",
        HF_HUB_OFFLINE=None,
        HF_ENDPOINT="http://127.0.0.1:9",
    ),
    mistake("not a Hub name", [*RUN.split(), "--set", "model=my model"], "nor a Hub name"),
    setting("seq_len beyond the embedded model", "seq_len=1024", "exceeds the 512 positions"),
    setting(
        "seq_len beyond a local model",
        "model=model seq_len=256",
        "seq_len 256 exceeds the 128 positions of model 'model'",
        model_with(),
    ),
    setting(
        "seq_len beyond a cached Hub model",
        "model=org/small",
        "seq_len 64 exceeds the 32 positions of model 'org/small'",
        CACHED_HUB_MODEL,
        HF_HUB_CACHE="hub",
    ),
    # datasets
    setting("missing dataset file", "dataset=data/code.jsonl", "dataset file not found"),
    setting(
        "spreadsheet as the dataset",
        "dataset=code.xlsx",
        "use a .jsonl, .json, .parquet, .csv, .txt file",
        on_disk({"code.xlsx": "PK"}),
    ),
    setting(
        "folder of files as the dataset",
        "dataset=data",
        "is not a datasets save_to_disk folder",
        on_disk({"data/a.jsonl": jsonl([{"content": CODE}])}),
    ),
    setting("empty file", "dataset=code.jsonl", "is empty", on_disk({"code.jsonl": ""})),
    setting("Hub dataset offline", "dataset=org/code", "cannot load dataset 'org/code'"),
    setting(
        "dataset without the text column",
        "dataset=code.jsonl text_column=text",
        "has no column 'text' (columns: content); set text_column",
        CODE_FILE,
    ),
    setting("too small for the clients", "dataset=code.jsonl", "its 3 documents", CODE_FILE),
    setting("more than the embedded corpus", "samples_per_client=1000000", "is too small"),
    setting(
        "fewer sources than clients",
        "dataset=code.jsonl partition=by-source",
        "has 1 (column 'repo_name') for 2 clients",
        ONE_SOURCE,
    ),
    setting(
        "by-source without a source column",
        "dataset=code.jsonl partition=by-source source_column=repo",
        "has no column 'repo'; set source_column",
        ONE_SOURCE,
    ),
    setting(
        "prose as JSON lines",
        "dataset=code.jsonl",
        "cannot load dataset 'code.jsonl'",
        on_disk({"code.jsonl": "def f():\n    pass\n"}),
    ),
    # fedtui serve and fedtui join
    mistake(
        "serve on a port that is no port",
        "serve --headless --address 0.0.0.0:70000",
        "--address '0.0.0.0:70000': expected HOST:PORT",
    ),
    mistake(
        "serve on an address of another machine",
        "serve --headless --runs-dir runs --address 192.0.2.99:9092",
        "--address 192.0.2.99:9092: cannot listen",
    ),
    mistake(
        "serve with no time to join",
        "serve --headless --join-timeout 0",
        "--join-timeout must be > 0",
    ),
    mistake(
        "serve in the simulation runtime",
        "serve --headless --set backend=simulation",
        'fedtui serve needs backend = "deployment"',
    ),
    mistake(
        "serve with a stranger's key format",
        "serve --headless --runs-dir runs",
        "federation/authorized_keys, line 2: not an OpenSSH public key",
        on_disk({"federation/authorized_keys": "# lab\nssh-rsa garbage\n"}),
    ),
    mistake(
        "join without the server's CA",
        "join 10.0.0.1:9092 --partition-id 0",
        "--ca: the server's CA certificate",
    ),
    mistake(
        "join with a CA file that is not there",
        "join 10.0.0.1:9092 --partition-id 0 --ca ca.pem --key k",
        "--ca ca.pem: no such file",
    ),
    mistake(
        "join without a key",
        "join 10.0.0.1:9092 --partition-id 0 --ca ca.pem",
        "--key: this client's private key",
        on_disk({"ca.pem": "x"}),
    ),
    mistake(
        "join with a key that is no key",
        "join 10.0.0.1:9092 --partition-id 0 --ca ca.pem --key client.key",
        "--key client.key: not an OpenSSH private key",
        on_disk({"ca.pem": "x", "client.key": "-----BEGIN NOTHING-----\n"}),
    ),
    mistake(
        "join in plain text with a CA",
        "join 10.0.0.1:9092 --partition-id 0 --insecure --ca ca.pem",
        "--ca and --insecure: choose one",
    ),
    mistake(
        "join as a negative client",
        "join 10.0.0.1:9092 --partition-id -1 --insecure",
        "--partition-id must be >= 0",
    ),
    mistake(
        "join with a device that is none",
        "join 10.0.0.1:9092 --partition-id 0 --insecure --device gpu",
        "--device must be auto, cpu, cuda or cuda:N; got 'gpu'",
    ),
    mistake(
        "join with a GPU the machine lacks",
        "join 10.0.0.1:9092 --partition-id 0 --insecure --device cuda:99",
        "--device 'cuda:99', but",
    ),
    mistake(
        "join an address without a port",
        "join 10.0.0.1 --partition-id 0 --insecure",
        "ADDRESS '10.0.0.1': expected HOST:PORT",
    ),
    # run folders and their records
    mistake("replay of a missing folder", "replay runs/gone", "not a run folder: runs/gone"),
    mistake("export of a missing folder", "export runs/gone", "not a run folder: runs/gone"),
    mistake("misspelt sample run", "replay fedprox-mu0.2", "not a run folder: fedprox-mu0.2"),
    mistake("runs of a missing folder", "runs gone", "not a folder: gone"),
    mistake("export of a file", "export notes.txt", "not a run folder", on_disk({"notes.txt": ""})),
    mistake(
        "export of a folder without a record",
        "export old/r",
        "no events.jsonl",
        on_disk({"old/r/config.toml": "rounds = 3\n"}),
    ),
    mistake(
        "replay of a folder without a record",
        "replay old/r",
        "no events.jsonl",
        on_disk({"old/r/logs/": ""}),
    ),
    record("empty record", "export", "", "run folder has no events yet"),
    record("binary record", "export", bytes(range(256)) * 4, "holds no readable event (line 1"),
    record("record of prose", "replay", "it went well\n", "no readable event (line 1: not JSON)"),
    record("another tool's JSON lines", "export", ANOTHER_TOOLS_LINES, "unknown event type None"),
    record("record of a newer fedtui", "export", NEWER, "v99 is newer than this fedtui"),
]


class NoRun(RunController):
    def start(self):
        raise AssertionError("the mistake got past every check: a run would start")


def no_launch(*args, **kwargs):
    raise AssertionError("the mistake got past every check: a run would start")


@pytest.fixture(autouse=True)
def in_a_folder_of_its_own(tmp_path, monkeypatch):
    """The test's folder is the working folder; no Hub is reachable, its cache is empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", f"{tmp_path}-empty-hub-cache")
    monkeypatch.setattr(lifecycle, "RunController", NoRun)
    monkeypatch.setattr(engine.run.sweep, "RunController", NoRun)
    monkeypatch.setattr(lifecycle.detached, "launch", no_launch)
    monkeypatch.setattr(tui.join, "ClientHost", no_launch)


@pytest.mark.parametrize("argv, says, prepare, env", MISTAKES)
def test_a_mistake_is_refused_in_one_line_and_changes_nothing(
    argv, says, prepare, env, tmp_path, monkeypatch, capsys
):
    prepare(tmp_path)
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(tmp_path / value) if name == "HF_HUB_CACHE" else value)
    before = snapshot(tmp_path)

    code, out, err = run_cli(capsys, argv)

    assert "Traceback" not in out + err
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("fedtui: error: ") and says in err, err
    assert snapshot(tmp_path) == before  # nothing recorded, nothing lost


def test_a_cpu_only_machine_refuses_cuda(capsys):
    pytest.importorskip("torch").cuda.is_available() and pytest.skip("this machine has CUDA")
    code, _, err = run_cli(capsys, f"{RUN} --set device=cuda")
    assert code == 2 and err.count("\n") == 1
    assert "device='cuda', but" in err and "use device=auto or cpu" in err
    assert not Path("runs").exists()
    code, _, err = run_cli(capsys, "join 10.0.0.1:9092 --partition-id 0 --insecure --device cuda")
    assert code == 2 and err.count("\n") == 1
    assert "--device 'cuda', but" in err and "use --device auto or cpu" in err


def test_the_simulation_backend_without_ray_names_the_extra(capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    code, _, err = run_cli(capsys, f"{RUN} --set backend=simulation")
    assert (code, err.count("\n")) == (2, 1), err
    assert "backend=simulation needs Ray: pip install 'fedtui[simulation]'" in err
    assert not Path("runs").exists()


@pytest.mark.parametrize(
    "program, argv, says",
    [
        ("fedtui", f"{RUN} --set device=cuda:99", "device='cuda:99', but"),
        ("python -m tui.cli", f"{RUN} --set model=facebook/opt-350m", "HF_HUB_OFFLINE is set"),
        ("python -m tui.cli", "export old/r", "old/r/events.jsonl holds no readable event"),
    ],
)
def test_no_traceback_reaches_the_terminal(program, argv, says, tmp_path):
    """The same mistakes as a user types them, in a process of their own."""
    on_disk({"old/r/events.jsonl": bytes(range(256))})(tmp_path)
    before = snapshot(tmp_path)
    command = (
        [str(Path(sys.executable).parent / "fedtui")]
        if program == "fedtui"
        else [sys.executable, "-m", "tui.cli"]
    )
    result = subprocess.run(
        command + argv.split(),
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr
    assert snapshot(tmp_path) == before
