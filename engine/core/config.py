"""The run configuration, declared once: every key with its type, default, help, the values it
takes and whether it may change between the rounds of a live run (`key`). `config_from_dict`
checks values against the declaration; `declared_keys` lists it for every rendering (`fedtui
config`, the README's reference, the TUI's forms). Files, presets and `--set` are
engine.core.config_files'.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from engine.core.errors import ConfigError

EMBEDDED_MODEL = "embedded:tiny-opt"
EMBEDDED_DATASET = "embedded:stdlib-code"

STRATEGIES = ("fedprox", "fedavg", "fedavgm")
PARTITIONS = ("iid", "by-source", "dirichlet")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The dtypes weights may travel in, by config name: the numpy and torch dtypes of that name.
TRANSFER_DTYPES = {"fp32": "float32", "fp16": "float16"}
DEVICES = "auto, cpu, cuda or cuda:N"
AGGREGATIONS = ("streaming", "flower")
BACKENDS = ("deployment", "simulation")
KEEP_CHECKPOINTS = ("all", "best-last")


def key(
    default: Any,
    help: str,
    *,
    live: bool = False,
    choices: tuple = (),
    minimum: float | None = None,
    exclusive_minimum: bool = False,
) -> Any:
    """A config key, declared once: its default, its help, what values it takes, and whether it
    may change between the rounds of a live run (`live`). Every listing of keys (`fedtui
    config`, the README's reference, the TUI's forms) and every check of a value reads it."""
    metadata = {
        "help": help,
        "live": live,
        "choices": choices,
        "minimum": minimum,
        "exclusive": exclusive_minimum,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool = key(False, "stop when central eval loss stops improving", live=True)
    patience: int = key(
        2, "rounds without an improvement of at least min_delta", minimum=1, live=True
    )
    min_delta: float = key(
        0.0, "smallest decrease of eval loss that counts", minimum=0.0, live=True
    )


@dataclass(frozen=True)
class Lora:
    enabled: bool = key(
        False,
        "train LoRA adapters (peft) instead of every weight; only the "
        "adapters travel and are aggregated",
    )
    r: int = key(8, "LoRA rank", minimum=1)
    alpha: int = key(16, "LoRA scaling alpha (the update is scaled by alpha / r)", minimum=1)
    dropout: float = key(0.05, "dropout on the LoRA path", minimum=0.0)
    target_modules: str | list[str] = key(
        "auto",
        'modules to adapt: "auto" (peft\'s default for the architecture) or a list of module '
        'names like ["q_proj", "v_proj"]',
    )


@dataclass(frozen=True)
class RunConfig:
    name: str = key("", "run name shown in the UI and used in the run id")
    model: str = key(EMBEDDED_MODEL, "embedded:tiny-opt, a Hub name or a save_pretrained folder")
    dataset: str = key(
        EMBEDDED_DATASET, "embedded:stdlib-code, a Hub name or a .jsonl/.json/.parquet/.txt file"
    )
    text_column: str = key("content", "column holding the text (Hub and file datasets)")
    source_column: str = key("repo_name", "column naming each row's source (partition=by-source)")
    num_clients: int = key(2, "number of clients (one SuperNode each)", minimum=1)
    clients_per_round: int = key(
        0, "clients sampled (seeded) to train each round (0: every client)", minimum=0, live=True
    )
    min_clients: int = key(
        0,
        "replies a round needs to aggregate; a round with fewer fails the run "
        "(0: every client sampled for the round)",
        minimum=0,
        live=True,
    )
    backend: str = key(
        "deployment",
        "deployment: a SuperNode process per client; simulation: Flower's simulation "
        "runtime (Ray), virtual clients sharing the machine",
        choices=BACKENDS,
    )
    client_cpus: int = key(1, "simulation: CPU cores each virtual client reserves", minimum=1)
    client_gpu_fraction: float = key(
        0.0,
        "simulation: share of a GPU each virtual client reserves (0: one whole GPU on a "
        "CUDA run, none on CPU)",
        minimum=0.0,
    )
    samples_per_client: int = key(256, "training samples held by each client", minimum=1)
    eval_samples: int = key(128, "held-out samples for the server's central evaluation", minimum=1)
    partition: str = key(
        "iid",
        "iid; by-source: each client holds different sources; dirichlet: sources shared "
        "out by a Dirichlet draw (dirichlet_alpha)",
        choices=PARTITIONS,
    )
    dirichlet_alpha: float = key(
        0.5,
        "partition=dirichlet: concentration (0.1: each client mostly one source; 10: near iid)",
        minimum=0.0,
        exclusive_minimum=True,
    )
    client_eval: bool = key(
        False,
        "each client also evaluates the global model every round on a held-out tenth of its "
        "own samples (Flower's evaluate messages)",
        live=True,
    )
    local_epochs: int = key(1, "local epochs per round", minimum=1, live=True)
    learning_rate: float = key(
        1e-3, "client AdamW learning rate", minimum=0.0, exclusive_minimum=True, live=True
    )
    train_batch_size: int = key(8, "client training batch size", minimum=1)
    eval_batch_size: int = key(16, "central evaluation batch size", minimum=1)
    seq_len: int = key(64, "tokens per sample", minimum=8)
    rounds: int = key(5, "federated rounds", minimum=1, live=True)
    strategy: str = key("fedprox", "fedprox, fedavg or fedavgm", choices=STRATEGIES)
    proximal_mu: float = key(0.1, "FedProx proximal term weight mu", minimum=0.0, live=True)
    server_momentum: float = key(0.9, "FedAvgM server momentum", minimum=0.0, live=True)
    server_learning_rate: float = key(
        1.0, "FedAvgM server learning rate", minimum=0.0, exclusive_minimum=True, live=True
    )
    seed: int = key(0, "seed for model init, data split and shuffling")
    device: str = key("auto", DEVICES)
    threads_per_client: int = key(
        0, "torch threads per client process (0: cores / clients)", minimum=0
    )
    client_gpus: list[int] = key(
        [], "GPU index per client, cycled (empty: round-robin over all GPUs)", minimum=0
    )
    round_timeout: float = key(
        3600.0,
        "seconds to wait for client replies in a round",
        minimum=0.0,
        exclusive_minimum=True,
        live=True,
    )
    precision: str = key(
        "auto",
        "compute precision: auto (bf16 where the GPU supports it, "
        "else fp32), fp32, bf16 or fp16; weights stay fp32",
        choices=PRECISIONS,
    )
    transfer_dtype: str = key(
        "fp32",
        "dtype of the weights sent between server and clients",
        choices=tuple(TRANSFER_DTYPES),
    )
    gradient_checkpointing: bool = key(
        False, "recompute activations in the backward pass (less memory, ~30% more compute)"
    )
    grad_accum_steps: int = key(
        1, "batches whose gradients add up before an optimizer step", minimum=1
    )
    warm_workers: bool = key(
        True,
        "one long-lived worker per client keeps the model warm across rounds "
        "(false: Flower's fresh ClientApp process per message)",
    )
    shared_memory_weights: bool = key(
        True,
        "clients on the server's machine exchange weights with it through /dev/shm "
        "(false: as Flower's messages, like clients on other hosts)",
    )
    aggregation: str = key(
        "streaming",
        "streaming: fold each reply in as it arrives; flower: "
        "Flower's strategy.aggregate_train over all replies",
        choices=AGGREGATIONS,
    )
    keep_checkpoints: str = key(
        "all",
        "which rounds' global models stay in checkpoints/: all (any round can be forked; each "
        "costs the trainable weights: KB to MB with LoRA, 1.3 GB for OPT-350M fully fine-tuned) "
        "or best-last (the best and the last round's)",
        choices=KEEP_CHECKPOINTS,
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


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix + name!r}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        value = values[name]
        if f.type in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + name!r} must be a table")
            kwargs[name] = _build(TABLES[f.type], value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(f"{prefix}{name}", f, value)
    return cls(**kwargs)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
TABLES = {"EarlyStopping": EarlyStopping, "Lora": Lora}


def _check_value(name: str, f: dataclasses.Field, value: Any) -> Any:
    if f.type == "list[int]":
        if not isinstance(value, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
        ):
            raise ConfigError(
                f"config key {name!r} must be a list of GPU indices like [0, 1], got {value!r}"
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
            f'config key {name!r} must be "auto" or a list of module names like '
            f'["q_proj", "v_proj"], got {value!r}'
        )
    expected = _TYPES[str(f.type)]  # a name: this module's annotations are strings
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"config key {name!r} must be {f.type}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key {name!r} must be one of {', '.join(choices)}; got {value!r}")
    minimum = f.metadata.get("minimum")
    if minimum is not None:
        too_small = value <= minimum if f.metadata["exclusive"] else value < minimum
        if too_small:
            relation = ">" if f.metadata["exclusive"] else ">="
            raise ConfigError(f"config key {name!r} must be {relation} {minimum:g}, got {value!r}")
    if name == "device" and not is_device(str(value)):
        raise ConfigError(f"config key 'device' must be {DEVICES}; got {value!r}")
    return value


def is_device(value: str) -> bool:
    """Whether `value` is one of DEVICES."""
    prefix, _, index = value.partition(":")
    return value in ("auto", "cpu", "cuda") or (
        prefix == "cuda" and index.isascii() and index.isdigit()
    )
