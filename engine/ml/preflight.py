"""Checks a run's config against this machine before anything starts.

    preflight.check(config, progress=print)   # raises ConfigError: one line naming the problem

The trackers in `report_to` (their libraries installed), the device (CUDA at all, the index,
`client_gpus`), the model (a save_pretrained folder, a Hub name that can load, `seq_len` within its
positions), the data format (loss_on, prompt_template, a chat template for chat data) and the
dataset (a file or save_to_disk folder, a Hub name that can load, its columns, enough samples for
the clients and the eval set) are checked before a run folder exists or a process starts, so a
mistake costs no run. The sample check tokenizes through `engine.ml.data.prepare`, whose cache
the run then reuses.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.core.config import EMBEDDED_DATASET, EMBEDDED_MODEL, RunConfig
from engine.core.errors import ConfigError
from engine.ml import code_eval, data, prompts
from engine.ml.hub import check_hub_name
from engine.ml.samples import most_samples
from engine.record.trackers import mirror as trackers

Progress = Callable[[str], None]

# Where a model config states its longest sequence, by architecture family.
POSITION_KEYS = (
    "max_position_embeddings",  # OPT, Llama, Mistral, most
    "n_positions",  # GPT-2, GPT-J
    "max_sequence_length",
    "seq_length",
    "n_ctx",
    "max_seq_len",  # MPT
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")  # what datasets.save_to_disk writes
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check(config: RunConfig, progress: Progress = lambda message: None) -> None:
    """Raise ConfigError for the first thing in `config` that would fail the run. `progress`
    hears of each slow step (importing torch, loading and tokenizing the dataset)."""
    check_backend(config)
    trackers.require(config.report_to)
    check_device(config, progress)
    check_model(config)
    check_dataset(config)
    check_data_format(config, progress)
    if config.code_eval.enabled:  # the benchmark is read now: a bad file fails here, in one line
        code_eval.load_problems(config.code_eval.benchmark, config.code_eval.problems, config.seed)
    check_samples(config, progress)


# -- backend ------------------------------------------------------------------------------------


def check_backend(config: RunConfig) -> None:
    """Flower's simulation runtime needs Ray, which fedtui installs only as an extra."""
    if config.backend == "simulation" and importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "backend=simulation needs Ray: pip install 'fedtui[simulation]' "
            "(Flower's simulation extra)"
        )


# -- device -------------------------------------------------------------------------------------


def check_device(config: RunConfig, progress: Progress = lambda message: None) -> None:
    wants_cuda = config.device.startswith("cuda")
    pins_gpus = bool(config.client_gpus) and config.device != "cpu"
    if not (wants_cuda or pins_gpus):
        return
    progress("checking CUDA devices")
    cuda = check_cuda(config.device, "device=")
    _, _, index_text = config.device.partition(":")
    nvml = _nvml_device_count() if index_text or pins_gpus else 0
    index = int(index_text or 0)
    if index > 0 and (config.client_gpus or nvml):
        # the deployment sets CUDA_VISIBLE_DEVICES to one GPU per client: it is cuda:0 there
        raise ConfigError(
            f"device={config.device!r}: each client is pinned to one GPU, which it sees as "
            f'cuda:0; choose GPUs with client_gpus = [{index}] and device = "cuda"'
        )
    if pins_gpus:
        count = nvml or cuda  # the deployment pins by NVML's (PCI bus) index
        beyond = sorted(index for index in set(config.client_gpus) if index >= count)
        if beyond:
            named = ", ".join(map(str, beyond))
            raise ConfigError(f"client_gpus names GPU {named}, but this machine has {_gpus(count)}")


def check_cuda(device: str, setting: str) -> int:
    """How many CUDA devices torch sees; ConfigError when `device` (set as `setting`:
    "device=" in a config, "--device " on a command line) names one this machine lacks."""
    import torch  # heavy: only a device that may be CUDA pays for it

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not device.startswith("cuda"):
        return cuda
    if not cuda:
        raise ConfigError(
            f"{setting}{device!r}, but {_why_no_cuda(torch)}; use {setting}auto or cpu"
        )
    _, _, index = device.partition(":")
    if index and int(index) >= cuda:
        raise ConfigError(f"{setting}{device!r}, but this machine has {_gpus(cuda)}")
    return cuda


def _why_no_cuda(torch: Any) -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return "torch sees no CUDA device (no NVIDIA GPU or driver here)"


def _nvml_device_count() -> int:
    from engine.system.gpu import GpuSampler

    sampler = GpuSampler()
    try:
        return sampler.device_count
    finally:
        sampler.close()


def _gpus(count: int) -> str:
    if count == 0:
        return "no GPU"
    return "1 GPU (index 0)" if count == 1 else f"{count} GPUs (indices 0-{count - 1})"


# -- model --------------------------------------------------------------------------------------


def check_model(config: RunConfig) -> None:
    """The model loads as the run will load it (a folder, else a Hub name), and seq_len fits."""
    name = config.model
    if name == EMBEDDED_MODEL:
        _check_positions(config.seq_len, data.EMBEDDED_MAX_POSITIONS, "the embedded model")
        return
    path = Path(name)  # as engine.ml.model loads it: no ~ expansion
    if path.is_dir():
        model_config = _model_folder_config(path, name)
    elif path.exists():
        raise ConfigError(
            f"model {name!r} is a file; give a save_pretrained folder "
            f"(config.json, weights, tokenizer) or a Hub name"
        )
    else:
        _check_hub_name(name, "model")
        model_config = _hub_model_config(name)
    positions = max_positions(model_config)
    if positions is not None:
        _check_positions(config.seq_len, positions, f"model {name!r}")


def max_positions(model_config: dict[str, Any]) -> int | None:
    """The longest sequence a transformers model config allows, where it says."""
    for table in (model_config, model_config.get("text_config") or {}):
        for key in POSITION_KEYS:
            value = table.get(key) if isinstance(table, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _check_positions(seq_len: int, positions: int, what: str) -> None:
    if seq_len > positions:
        raise ConfigError(
            f"seq_len {seq_len} exceeds the {positions} positions of {what}; "
            f"set seq_len to {positions} or less"
        )


def _model_folder_config(path: Path, name: str) -> dict[str, Any]:
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"model folder {name!r} holds LoRA adapters only; give its base model, or "
            f"the merged model `fedtui export-model` writes"
        )
    model_config = _read_json_object(path / "config.json", f"model folder {name!r}")
    if "model_type" not in model_config:
        raise ConfigError(f"{path / 'config.json'} has no model_type: not a transformers model")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise ConfigError(
            f"model folder {name!r} has no weights (model.safetensors or pytorch_model.bin)"
        )
    if not any((path / file).is_file() for file in TOKENIZER_FILES):
        raise ConfigError(
            f"model folder {name!r} has no tokenizer (tokenizer.json); "
            f"save one there with tokenizer.save_pretrained"
        )
    return model_config


def _hub_model_config(name: str) -> dict[str, Any]:
    """The Hub model's config.json: from the local cache, else fetched (the Hub is reachable:
    `_check_hub_name` said so)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache = os.environ.get("HF_HUB_CACHE") or None
    cached = try_to_load_from_cache(name, "config.json", cache_dir=cache)
    if isinstance(cached, str):
        return _read_json_object(Path(cached), f"model {name!r}")
    try:
        # the model the user named, its config alone, read as JSON
        fetched = hf_hub_download(name, "config.json", cache_dir=cache)  # nosec B615
    except Exception as err:  # huggingface_hub raises many kinds; each means "cannot load this"
        reason = data.first_line(err)
        raise ConfigError(f"cannot load model {name!r} from the Hub: {reason}") from None
    return _read_json_object(Path(fetched), f"model {name!r}")


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} is not a save_pretrained folder (no config.json)")
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not readable JSON: {data.first_line(err)}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return value


# -- dataset ------------------------------------------------------------------------------------


def check_dataset(config: RunConfig) -> None:
    """The dataset is where the run will look for it, in a form it can load."""
    name = config.dataset
    if name == EMBEDDED_DATASET:
        return
    path = Path(name).expanduser()  # as engine.ml.data loads it
    suffixes = ", ".join(data.DATASET_FILE_SUFFIXES)
    if path.is_dir():
        if not any((path / file).is_file() for file in SAVED_DATASET_FILES):
            raise ConfigError(
                f"dataset folder {name!r} is not a datasets save_to_disk folder (no state.json "
                f"or dataset_dict.json); give a {suffixes} file"
            )
    elif path.suffix in data.DATASET_FILE_SUFFIXES:
        if not path.exists():
            raise ConfigError(f"dataset file not found: {name}")
        if path.stat().st_size == 0:
            raise ConfigError(f"dataset file is empty: {name}")
    elif path.exists():
        raise ConfigError(f"dataset {name!r}: use a {suffixes} file or a save_to_disk folder")
    else:
        _check_hub_name(name, "dataset")


def check_data_format(config: RunConfig, progress: Progress = lambda message: None) -> None:
    """What data_format, loss_on and prompt_template ask is possible, whatever the rows hold:
    chat data needs the model's tokenizer to have a chat template."""
    prompts.check_data_format(config)
    if config.data_format == "chat":
        progress(f"loading the tokenizer of {config.model}")
        prompts.require_chat_template(data.load_tokenizer(config, progress), config.model)


def check_samples(config: RunConfig, progress: Progress = lambda message: None) -> None:
    """The dataset has the columns the config names and enough samples of seq_len tokens for
    every client and the eval set. Already prepared: known good, nothing to do."""
    if data.prepared_path(config).exists():
        return
    if config.dataset != EMBEDDED_DATASET:
        progress(f"loading dataset {config.dataset}")
    with _silenced("datasets"):  # it logs the error we report in one line
        documents = data.load_documents(config)
    needed = config.num_clients * config.samples_per_client + config.eval_samples
    at_most = most_samples(documents, config.seq_len)
    if at_most < needed:
        kind = "documents" if documents.examples is None else "examples"
        raise ConfigError(
            f"dataset {config.dataset!r} is too small: its {len(documents)} {kind} give "
            f"at most {at_most} samples of {config.seq_len} tokens, the config needs {needed} "
            f"(num_clients x samples_per_client + eval_samples)"
        )
    if config.partition == "by-source":
        sources = len(set(documents.sources))
        if sources < config.num_clients:
            raise ConfigError(
                f"partition=by-source gives each client whole sources, but dataset "
                f"{config.dataset!r} has {sources} (column {config.source_column!r}) for "
                f"{config.num_clients} clients"
            )
    data.prepare(config, progress, documents=documents)  # tokenizes: the exact count


# -- Hub names ----------------------------------------------------------------------------------


def _check_hub_name(name: str, kind: str) -> None:
    """A name that is not a path here is a Hub name: it must be one, and be able to load."""
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"{kind} {'folder' if kind == 'model' else 'file'} not found: {name}")
    if not _HUB_NAME.fullmatch(name) or "--" in name or ".." in name:
        raise ConfigError(
            f"{kind} {name!r} is neither a path here nor a Hub name like "
            f"{'facebook/opt-350m' if kind == 'model' else 'codeparrot/codeparrot-clean-valid'}"
        )
    try:
        check_hub_name(name, kind)
    except ConfigError as err:
        folder = name.partition("/")[0]
        if "/" in name and Path(folder).is_dir():  # meant as a path under an existing folder?
            raise ConfigError(f"{err} (nor is there a {name} here)") from None
        raise


@contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
