"""Data for a run: documents, tokenizer, and the cached samples of every client and the eval set.

`prepare(config)` does the work once per distinct setup and caches the result (tokenizer and
samples) under the cache folder, so the controller pays for it before Flower starts and every
client or server process only loads a file. A process on another host that lacks the cache
builds the same result, because everything is a function of the config and its seed.

Documents come from the embedded corpus (the running Python's standard-library sources, real
Python code like codeparrot's), a local file (.jsonl, .json, .parquet, .csv, .txt), a folder
written by `datasets.Dataset.save_to_disk`, or a Hugging Face Hub dataset name: text_column for
data_format=text, the instruction, input and output columns or the messages column for
instruction and chat data (engine.ml.prompts renders them).
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tokenizers import ByteLevelBPETokenizer

from engine.core.config import EMBEDDED_DATASET, EMBEDDED_MODEL, RunConfig
from engine.core.errors import ConfigError
from engine.ml.hub import check_hub_name
from engine.ml.prompts import check_data_format
from engine.ml.samples import ARRAYS, Documents, Samples, partition_summary, split

CACHE_FORMAT = 3  # 2: each client's sample sources; 3: labels_mask and truncation
EMBEDDED_VOCAB_SIZE = 4096
EMBEDDED_MAX_POSITIONS = 512  # the embedded model's longest sequence (engine.ml.model.TINY_OPT)
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as OPT numbers them
PAD_ID, EOS_ID = 1, 2
_SKIPPED_STDLIB_PARTS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "encodings",
    "__pycache__",
}
_FILE_LOADERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
}
DATASET_FILE_SUFFIXES = tuple(_FILE_LOADERS)
_FORMAT_COLUMNS = {  # the column settings each data_format reads
    "text": ("text_column",),
    "instruction": ("instruction_column", "input_column", "output_column"),
    "chat": ("messages_column",),
}

Progress = Callable[[str], None]


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedtui"
    path = Path(os.environ.get("FEDTUI_CACHE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepared_path(config: RunConfig) -> Path:
    """Where `prepare` caches the config's samples (the file exists once they are prepared)."""
    return cache_dir() / f"samples-{_samples_key(config)}.npz"


def prepare(
    config: RunConfig,
    progress: Progress = lambda message: None,
    documents: Documents | None = None,
) -> Path:
    """Build (or find cached) tokenized samples for every client and the eval set; `documents`:
    the config's, when the caller has loaded them already."""
    path = prepared_path(config)
    if path.exists():
        return path
    tokenizer = load_tokenizer(config, progress)
    if documents is None:
        progress(f"loading dataset {config.dataset}")
        documents = load_documents(config)
    kind = "documents" if documents.examples is None else f"{config.data_format} examples"
    progress(f"tokenizing and partitioning {len(documents)} {kind}")
    eval_set, clients = split(config, documents, tokenizer)
    named = {
        "eval": eval_set,
        **{f"client{index}": samples for index, samples in enumerate(clients)},
    }
    arrays = {
        f"{name}_{field}": array
        for name, samples in named.items()
        for field in ARRAYS
        if (array := getattr(samples, field)) is not None
    }
    _atomic_write(path, lambda tmp: np.savez(tmp, allow_pickle=False, **arrays))
    return path


def load_client_samples(config: RunConfig, client: int) -> Samples:
    return _load_split(config, f"client{client}")


def load_eval_samples(config: RunConfig) -> Samples:
    return _load_split(config, "eval")


def load_partition_summary(config: RunConfig) -> list[dict]:
    """How the clients' samples are spread over sources (engine.ml.samples.partition_summary)."""
    clients = [_load_split(config, f"client{k}") for k in range(config.num_clients)]
    return partition_summary(clients)


def partition_sizes(config: RunConfig) -> list[int]:
    """The samples each client holds (before any are held out for client_eval)."""
    with np.load(prepare(config)) as arrays:
        return [len(arrays[f"client{k}_ids"]) for k in range(config.num_clients)]


def _load_split(config: RunConfig, name: str) -> Samples:
    with np.load(prepare(config)) as arrays:
        return Samples(**{field: arrays.get(f"{name}_{field}") for field in ARRAYS})


def load_tokenizer(config: RunConfig, progress: Progress = lambda message: None):
    """The model's tokenizer; for the embedded model, a byte-level BPE trained on the embedded
    corpus and cached."""
    # heavy: kept out of the controller and CLI processes, which import this module
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if config.model != EMBEDDED_MODEL:
        if not Path(config.model).is_dir():
            check_hub_name(config.model, "model")
        try:
            # the model the user named; no remote code runs (SECURITY.md)
            tokenizer = AutoTokenizer.from_pretrained(config.model)  # nosec B615
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"cannot load the tokenizer of model {config.model!r}: {first_line(err)}"
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    path = cache_dir() / f"tokenizer-{_corpus_key()}-{EMBEDDED_VOCAB_SIZE}.json"
    if not path.exists():
        progress("training the byte-level BPE tokenizer on the embedded corpus")
        _atomic_write(path, lambda tmp: _train_tokenizer(tmp))
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        name_or_path=EMBEDDED_MODEL,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def _train_tokenizer(destination: Path) -> None:
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        _stdlib_documents().texts,
        vocab_size=EMBEDDED_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.save(str(destination))


def load_documents(config: RunConfig) -> Documents:
    """The config's documents (data_format=text) or examples (instruction, chat): the columns it
    names, each checked to be there."""
    check_data_format(config)
    if config.dataset == EMBEDDED_DATASET:
        return _stdlib_documents()
    table = _load_table(config.dataset)
    columns = _FORMAT_COLUMNS[config.data_format]
    for setting in columns:
        _require_column(config, table, setting)
    if config.partition == "by-source":
        if config.source_column not in table.column_names:
            raise ConfigError(
                f"partition=by-source needs a source column, but dataset "
                f"{config.dataset!r} has no column {config.source_column!r}; "
                f"set source_column"
            )
        sources = [str(source) for source in table[config.source_column]]
    else:
        sources = [""] * len(table)
    if config.data_format == "text":
        return Documents([str(text) for text in table[config.text_column]], sources)
    named = table.select_columns(sorted({getattr(config, setting) for setting in columns}))
    return Documents([], sources, examples=named.to_list())


def _require_column(config: RunConfig, table, setting: str) -> None:
    column = getattr(config, setting)
    if column not in table.column_names:
        raise ConfigError(
            f"dataset {config.dataset!r} has no column {column!r} "
            f"(columns: {', '.join(table.column_names)}); set {setting}"
        )


def _load_table(name: str):
    import datasets  # heavy: kept out of the controller and CLI processes

    datasets.disable_progress_bars()
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        if path.suffix in _FILE_LOADERS:
            if not path.is_file():
                raise ConfigError(f"dataset file not found: {name}")
            # a local file through its format's loader: nothing is downloaded
            return datasets.load_dataset(  # nosec B615
                _FILE_LOADERS[path.suffix], data_files=str(path), split="train"
            )
        if path.exists() or name.startswith((".", "/", "~")):
            raise ConfigError(
                f"dataset {name!r}: use a .jsonl, .json, .parquet, .csv or .txt "
                f"file or a save_to_disk folder"
            )
        check_hub_name(name, "dataset")
        # the Hub dataset the user named; revisions are not pinned (SECURITY.md)
        return datasets.load_dataset(name, split="train")  # nosec B615
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many kinds; each means "cannot load this"
        raise ConfigError(f"cannot load dataset {name!r}: {first_line(err)}") from None


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = _stdlib_root()
    return sorted(
        path
        for path in root.rglob("*.py")
        if not _SKIPPED_STDLIB_PARTS.intersection(path.relative_to(root).parts)
    )


def _stdlib_documents() -> Documents:
    root = _stdlib_root()
    texts, sources = [], []
    for path in _stdlib_files():
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        sources.append(path.relative_to(root).parts[0].removesuffix(".py"))
    return Documents(texts, sources)


def _corpus_key() -> str:
    listing = [(str(path), path.stat().st_size) for path in _stdlib_files()]
    return _digest(listing)[:12]


def _samples_key(config: RunConfig) -> str:
    format_keys = _FORMAT_COLUMNS[config.data_format]
    if config.data_format != "text":
        format_keys += ("loss_on",)
    if config.data_format == "instruction":
        format_keys += ("prompt_template",)
    relevant = {
        name: getattr(config, name)
        for name in (
            "model",
            "dataset",
            "data_format",
            *format_keys,
            "source_column",
            "num_clients",
            "samples_per_client",
            "eval_samples",
            "partition",
            "dirichlet_alpha",
            "seq_len",
            "seed",
        )
    }
    if EMBEDDED_MODEL in (config.model, config.dataset):
        relevant["corpus"] = _corpus_key()
    local = Path(config.dataset).expanduser()
    if config.dataset != EMBEDDED_DATASET and local.exists():
        relevant["content"] = _content_key(local)  # an edited file gives new samples
    return _digest([CACHE_FORMAT, relevant])[:16]


def _content_key(path: Path) -> str:
    """A digest of a local dataset's bytes (a file, or every file of a save_to_disk folder),
    remembered per (path, size, mtime) in this process: every load of a split asks for it."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(str(p.resolve()), *_stat_key(p)) for p in files]
    key = _digest(stats)
    if key not in _content_keys:
        digest = hashlib.sha256()
        for file in files:
            name = file.relative_to(path) if path.is_dir() else ""
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        _content_keys[key] = digest.hexdigest()
    return _content_keys[key]


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


_content_keys: dict[str, str] = {}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def first_line(err: BaseException) -> str:
    """An error's message in one line, for a one-line refusal."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
