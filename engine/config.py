"""Run configuration: one TOML file plus `--set key=value` overrides, validated field by field.

A config is resolved in layers: the built-in defaults, then a preset or a TOML file, then each
`--set` in order. Every mistake is reported as one `ConfigError` line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

EMBEDDED_MODEL = "embedded:tiny-opt"
EMBEDDED_DATASET = "embedded:stdlib-code"

STRATEGIES = ("fedprox", "fedavg", "fedavgm")
PARTITIONS = ("iid", "by-source", "dirichlet")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRANSFER_DTYPES = ("fp32", "fp16")
DEVICES = "auto, cpu, cuda or cuda:N"
AGGREGATIONS = ("streaming", "flower")
BACKENDS = ("deployment", "simulation")


def _spec(
    default: Any,
    help: str,
    *,
    choices: tuple = (),
    minimum: float | None = None,
    exclusive_minimum: bool = False,
) -> Any:
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "minimum": minimum,
            "exclusive": exclusive_minimum,
        },
    )


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool = _spec(False, "stop when central eval loss stops improving")
    patience: int = _spec(2, "rounds without an improvement of at least min_delta", minimum=1)
    min_delta: float = _spec(0.0, "smallest decrease of eval loss that counts", minimum=0.0)


@dataclass(frozen=True)
class Lora:
    enabled: bool = _spec(
        False,
        "train LoRA adapters (peft) instead of every weight; only the "
        "adapters travel and are aggregated",
    )
    r: int = _spec(8, "LoRA rank", minimum=1)
    alpha: int = _spec(16, "LoRA scaling alpha (the update is scaled by alpha / r)", minimum=1)
    dropout: float = _spec(0.05, "dropout on the LoRA path", minimum=0.0)
    target_modules: str | list[str] = field(
        default="auto",
        metadata={
            "help": 'modules to adapt: "auto" (peft\'s default for the architecture) or a list of '
            'module names like ["q_proj", "v_proj"]',
            "choices": (),
            "minimum": None,
            "exclusive": False,
        },
    )


@dataclass(frozen=True)
class RunConfig:
    name: str = _spec("", "run name shown in the UI and used in the run id")
    model: str = _spec(EMBEDDED_MODEL, "embedded:tiny-opt, a Hub name or a save_pretrained folder")
    dataset: str = _spec(
        EMBEDDED_DATASET, "embedded:stdlib-code, a Hub name or a .jsonl/.json/.parquet/.txt file"
    )
    text_column: str = _spec("content", "column holding the text (Hub and file datasets)")
    source_column: str = _spec("repo_name", "column naming each row's source (partition=by-source)")
    num_clients: int = _spec(2, "number of clients (one SuperNode each)", minimum=1)
    clients_per_round: int = _spec(
        0, "clients sampled (seeded) to train each round (0: every client)", minimum=0
    )
    min_clients: int = _spec(
        0,
        "replies a round needs to aggregate; a round with fewer fails the run "
        "(0: every client sampled for the round)",
        minimum=0,
    )
    backend: str = _spec(
        "deployment",
        "deployment: a SuperNode process per client; simulation: Flower's simulation "
        "runtime (Ray), virtual clients sharing the machine",
        choices=BACKENDS,
    )
    client_cpus: int = _spec(1, "simulation: CPU cores each virtual client reserves", minimum=1)
    client_gpu_fraction: float = _spec(
        0.0,
        "simulation: share of a GPU each virtual client reserves (0: one whole GPU on a "
        "CUDA run, none on CPU)",
        minimum=0.0,
    )
    samples_per_client: int = _spec(256, "training samples held by each client", minimum=1)
    eval_samples: int = _spec(
        128, "held-out samples for the server's central evaluation", minimum=1
    )
    partition: str = _spec(
        "iid",
        "iid; by-source: each client holds different sources; dirichlet: sources shared "
        "out by a Dirichlet draw (dirichlet_alpha)",
        choices=PARTITIONS,
    )
    dirichlet_alpha: float = _spec(
        0.5,
        "partition=dirichlet: concentration (0.1: each client mostly one source; 10: near iid)",
        minimum=0.0,
        exclusive_minimum=True,
    )
    client_eval: bool = _spec(
        False,
        "each client also evaluates the global model every round on a held-out tenth of its "
        "own samples (Flower's evaluate messages)",
    )
    local_epochs: int = _spec(1, "local epochs per round", minimum=1)
    learning_rate: float = _spec(
        1e-3, "client AdamW learning rate", minimum=0.0, exclusive_minimum=True
    )
    train_batch_size: int = _spec(8, "client training batch size", minimum=1)
    eval_batch_size: int = _spec(16, "central evaluation batch size", minimum=1)
    seq_len: int = _spec(64, "tokens per sample", minimum=8)
    rounds: int = _spec(5, "federated rounds", minimum=1)
    strategy: str = _spec("fedprox", "fedprox, fedavg or fedavgm", choices=STRATEGIES)
    proximal_mu: float = _spec(0.1, "FedProx proximal term weight mu", minimum=0.0)
    server_momentum: float = _spec(0.9, "FedAvgM server momentum", minimum=0.0)
    server_learning_rate: float = _spec(
        1.0, "FedAvgM server learning rate", minimum=0.0, exclusive_minimum=True
    )
    seed: int = _spec(0, "seed for model init, data split and shuffling")
    device: str = _spec("auto", DEVICES)
    threads_per_client: int = _spec(
        0, "torch threads per client process (0: cores / clients)", minimum=0
    )
    client_gpus: list[int] = field(
        default_factory=list,
        metadata={
            "help": "GPU index per client, cycled (empty: round-robin over all GPUs)",
            "choices": (),
            "minimum": 0,
            "exclusive": False,
        },
    )
    round_timeout: float = _spec(
        3600.0, "seconds to wait for client replies in a round", minimum=0.0, exclusive_minimum=True
    )
    precision: str = _spec(
        "auto",
        "compute precision: auto (bf16 where the GPU supports it, "
        "else fp32), fp32, bf16 or fp16; weights stay fp32",
        choices=PRECISIONS,
    )
    transfer_dtype: str = _spec(
        "fp32", "dtype of the weights sent between server and clients", choices=TRANSFER_DTYPES
    )
    gradient_checkpointing: bool = _spec(
        False, "recompute activations in the backward pass (less memory, ~30% more compute)"
    )
    grad_accum_steps: int = _spec(
        1, "batches whose gradients add up before an optimizer step", minimum=1
    )
    warm_workers: bool = _spec(
        True,
        "one long-lived worker per client keeps the model warm across rounds "
        "(false: Flower's fresh ClientApp process per message)",
    )
    shared_memory_weights: bool = _spec(
        True,
        "clients on the server's machine exchange weights with it through /dev/shm "
        "(false: as Flower's messages, like clients on other hosts)",
    )
    aggregation: str = _spec(
        "streaming",
        "streaming: fold each reply in as it arrives; flower: "
        "Flower's strategy.aggregate_train over all replies",
        choices=AGGREGATIONS,
    )
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    lora: Lora = field(default_factory=Lora)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def sampled_per_round(self) -> int:
        """How many clients train each round."""
        return self.clients_per_round or self.num_clients

    @property
    def required_replies(self) -> int:
        """How many clients must reply for a round to count (`min_clients`, 0 meaning every
        sampled one)."""
        return self.min_clients or self.sampled_per_round

    def describe_strategy(self) -> str:
        return describe_strategy(self.to_dict())


def describe_strategy(config: dict[str, Any]) -> str:
    """ "FedProx mu=0.1" and the like, from a config table (recorded runs hold tables)."""
    name = config.get("strategy", "?")
    if name == "fedprox":
        return f"FedProx mu={config.get('proximal_mu', 0):g}"
    if name == "fedavgm":
        return (
            f"FedAvgM momentum={config.get('server_momentum', 0):g} "
            f"server lr={config.get('server_learning_rate', 1):g}"
        )
    return "FedAvg" if name == "fedavg" else str(name)


def presets() -> dict[str, Path]:
    """Built-in presets by name (the TOML files shipped in engine/presets)."""
    folder = resources.files("engine") / "presets"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def load_config(
    source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Resolve defaults, then `source` (a TOML path or a preset name), then `--set` overrides."""
    values: dict[str, Any] = {}
    if source is not None:
        values = _read_toml(_locate(str(source)))
    for item in overrides:
        key, value = parse_override(item)
        _assign_dotted(values, key, value)
    return config_from_dict(values)


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    config: RunConfig = _build(RunConfig, values, prefix="")
    for key, limit, name in (
        ("clients_per_round", config.num_clients, "num_clients"),
        ("min_clients", config.sampled_per_round, "the clients sampled per round"),
    ):
        if getattr(config, key) > limit:
            raise ConfigError(
                f"config key {key!r} must be at most {name} ({limit}), got {getattr(config, key)}"
            )
    return config


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value`: the value is read as TOML (numbers, booleans, strings, lists), else a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML, written into every run folder."""
    top, tables = [], []
    for name, value in config.to_dict().items():
        if isinstance(value, dict):
            tables.append(f"\n[{name}]")
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        else:
            top.append(f"{name} = {_toml_value(value)}")
    return "\n".join(top + tables) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _locate(source: str) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    known = presets()
    if source in known:
        return known[source]
    if path.suffix == ".toml" or "/" in source:
        raise ConfigError(f"config file not found: {source}")
    raise ConfigError(
        f"no config file or preset named {source!r} (presets: {', '.join(sorted(known))})"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def _assign_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    *tables, leaf = key.split(".")
    target = values
    for table in tables:
        target = target.setdefault(table, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {table!r} is not a table")
    target[leaf] = value


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix + key!r}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        value = values[name]
        if f.type in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + name!r} must be a table")
            kwargs[name] = _build(_TABLES[f.type], value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(f"{prefix}{name}", f, value)
    return cls(**kwargs)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_TABLES = {"EarlyStopping": EarlyStopping, "Lora": Lora}


def _check_value(key: str, f: dataclasses.Field, value: Any) -> Any:
    if f.type == "list[int]":
        if not isinstance(value, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
        ):
            raise ConfigError(
                f"config key {key!r} must be a list of GPU indices like [0, 1], got {value!r}"
            )
        return value
    if f.type == "str | list[str]":
        if value == "auto" or (
            isinstance(value, list)
            and value
            and all(isinstance(item, str) and item for item in value)
        ):
            return value
        raise ConfigError(
            f'config key {key!r} must be "auto" or a list of module names like '
            f'["q_proj", "v_proj"], got {value!r}'
        )
    expected = _TYPES[str(f.type)]  # a name: this module's annotations are strings
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r} must be {f.type}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}; got {value!r}")
    minimum = f.metadata.get("minimum")
    if minimum is not None:
        too_small = value <= minimum if f.metadata["exclusive"] else value < minimum
        if too_small:
            relation = ">" if f.metadata["exclusive"] else ">="
            raise ConfigError(f"config key {key!r} must be {relation} {minimum:g}, got {value!r}")
    if key == "device" and not is_device(str(value)):
        raise ConfigError(f"config key 'device' must be {DEVICES}; got {value!r}")
    return value


def is_device(value: str) -> bool:
    """Whether `value` is one of DEVICES."""
    prefix, _, index = value.partition(":")
    return value in ("auto", "cpu", "cuda") or (
        prefix == "cuda" and index.isascii() and index.isdigit()
    )
