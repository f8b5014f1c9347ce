"""Data for a run: documents, tokenizer, tokenized samples, client partitions and the eval set.

`prepare(config)` does the work once per distinct setup and caches the result (tokenizer and
samples) under the cache folder, so the controller pays for it before Flower starts and every
client or server process only loads a file. A process on another host that lacks the cache
builds the same result, because everything is a function of the config and its seed.

Documents come from the embedded corpus (the running Python's standard-library sources, real
Python code like codeparrot's), a local file (.jsonl, .json, .parquet, .csv, .txt), a folder
written by `datasets.Dataset.save_to_disk`, or a Hugging Face Hub dataset name.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import EMBEDDED_DATASET, EMBEDDED_MODEL, RunConfig
from engine.errors import ConfigError
from engine.hub import check_hub_name

CACHE_FORMAT = 1
EMBEDDED_VOCAB_SIZE = 4096
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as OPT numbers them
PAD_ID, EOS_ID = 1, 2
_SKIPPED_STDLIB_PARTS = {"site-packages", "dist-packages", "test", "tests", "idlelib",
                         "lib2to3", "encodings", "__pycache__"}
_FILE_LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv",
                 ".txt": "text"}

Progress = Callable[[str], None]


@dataclass
class Documents:
    texts: list[str]
    sources: list[str]


@dataclass
class Samples:
    """Token ids, `PAD_ID`-padded to seq_len; `mask` is 1 where a token is real."""
    ids: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedtui"
    path = Path(os.environ.get("FEDTUI_CACHE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare(config: RunConfig, progress: Progress = lambda message: None) -> Path:
    """Build (or find cached) tokenized samples for every client and the eval set."""
    path = cache_dir() / f"samples-{_samples_key(config)}.npz"
    if path.exists():
        return path
    tokenizer = load_tokenizer(config, progress)
    progress(f"loading dataset {config.dataset}")
    documents = load_documents(config)
    progress(f"tokenizing and partitioning {len(documents.texts)} documents")
    eval_set, clients = _partition(config, documents, tokenizer)
    arrays = {"eval_ids": eval_set.ids, "eval_mask": eval_set.mask}
    for index, samples in enumerate(clients):
        arrays[f"client{index}_ids"], arrays[f"client{index}_mask"] = samples.ids, samples.mask
    _atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
    return path


def load_client_samples(config: RunConfig, client: int) -> Samples:
    return _load_split(config, f"client{client}")


def load_eval_samples(config: RunConfig) -> Samples:
    return _load_split(config, "eval")


def _load_split(config: RunConfig, name: str) -> Samples:
    with np.load(prepare(config)) as arrays:
        return Samples(arrays[f"{name}_ids"], arrays[f"{name}_mask"])


def load_tokenizer(config: RunConfig, progress: Progress = lambda message: None):
    """The model's tokenizer; for the embedded model, a byte-level BPE trained on the embedded
    corpus and cached."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if config.model != EMBEDDED_MODEL:
        if not Path(config.model).is_dir():
            check_hub_name(config.model, "model")
        try:
            tokenizer = AutoTokenizer.from_pretrained(config.model)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the tokenizer of model {config.model!r}: "
                              f"{_first_line(err)}") from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    path = cache_dir() / f"tokenizer-{_corpus_key()}-{EMBEDDED_VOCAB_SIZE}.json"
    if not path.exists():
        progress("training the byte-level BPE tokenizer on the embedded corpus")
        _atomic_write(path, lambda tmp: _train_tokenizer(tmp))
    return PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<s>", pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>")


def _train_tokenizer(destination: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(_stdlib_documents().texts, vocab_size=EMBEDDED_VOCAB_SIZE,
                                  min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  show_progress=False)
    tokenizer.save(str(destination))


def load_documents(config: RunConfig) -> Documents:
    if config.dataset == EMBEDDED_DATASET:
        return _stdlib_documents()
    table = _load_table(config.dataset)
    if config.text_column not in table.column_names:
        raise ConfigError(f"dataset {config.dataset!r} has no column {config.text_column!r} "
                          f"(columns: {', '.join(table.column_names)}); set text_column")
    texts = [str(text) for text in table[config.text_column]]
    if config.partition == "by-source":
        if config.source_column not in table.column_names:
            raise ConfigError(f"partition=by-source needs a source column, but dataset "
                              f"{config.dataset!r} has no column {config.source_column!r}; "
                              f"set source_column")
        sources = [str(source) for source in table[config.source_column]]
    else:
        sources = [""] * len(texts)
    return Documents(texts, sources)


def _load_table(name: str):
    import datasets

    datasets.disable_progress_bars()
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        if path.suffix in _FILE_LOADERS:
            if not path.is_file():
                raise ConfigError(f"dataset file not found: {name}")
            return datasets.load_dataset(_FILE_LOADERS[path.suffix], data_files=str(path),
                                         split="train")
        if path.exists() or name.startswith((".", "/", "~")):
            raise ConfigError(f"dataset {name!r}: use a .jsonl, .json, .parquet, .csv or .txt "
                              f"file or a save_to_disk folder")
        check_hub_name(name, "dataset")
        return datasets.load_dataset(name, split="train")
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many kinds; each means "cannot load this"
        raise ConfigError(f"cannot load dataset {name!r}: {_first_line(err)}") from None


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = _stdlib_root()
    return sorted(path for path in root.rglob("*.py")
                  if not _SKIPPED_STDLIB_PARTS.intersection(path.relative_to(root).parts))


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
    relevant = {name: getattr(config, name) for name in (
        "model", "dataset", "text_column", "source_column", "num_clients", "samples_per_client",
        "eval_samples", "partition", "seq_len", "seed")}
    if EMBEDDED_MODEL in (config.model, config.dataset):
        relevant["corpus"] = _corpus_key()
    return _digest([CACHE_FORMAT, relevant])[:16]


def _partition(config: RunConfig, documents: Documents, tokenizer) -> tuple[Samples, list[Samples]]:
    """Hold out whole documents for evaluation, then split the rest among clients.

    iid: chunks are shuffled and dealt out evenly. by-source: each source (a stdlib package, a
    repository) goes whole to one client, so clients hold different codebases.
    """
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(documents.texts))
    needed_train = config.num_clients * config.samples_per_client
    eval_chunks: list[list[int]] = []
    train_chunks: list[list[int]] = []
    train_sources: list[str] = []
    # by-source needs the whole corpus to balance sources; iid stops once it has enough.
    enough = (needed_train * 4) if config.partition == "by-source" else needed_train
    for start in range(0, len(order), 256):
        batch = order[start:start + 256]
        encoded = tokenizer([documents.texts[i] for i in batch], add_special_tokens=False)
        for doc_index, ids in zip(batch, encoded["input_ids"]):
            chunks = _chunk(ids + [tokenizer.eos_token_id], config.seq_len)
            if len(eval_chunks) < config.eval_samples:
                eval_chunks.extend(chunks[:4])
            else:
                train_chunks.extend(chunks)
                train_sources.extend([documents.sources[doc_index]] * len(chunks))
        if len(eval_chunks) >= config.eval_samples and len(train_chunks) >= enough:
            break
    if len(eval_chunks) < config.eval_samples or len(train_chunks) < needed_train:
        raise ConfigError(
            f"dataset {config.dataset!r} yields {len(train_chunks)} training and "
            f"{len(eval_chunks)} eval samples of {config.seq_len} tokens; the config needs "
            f"{needed_train} (num_clients x samples_per_client) and {config.eval_samples}")
    if config.partition == "by-source":
        client_indices = _deal_by_source(train_sources, config, rng)
    else:
        shuffled = rng.permutation(len(train_chunks))
        client_indices = [shuffled[k * config.samples_per_client:(k + 1) * config.samples_per_client]
                          for k in range(config.num_clients)]
    pad = tokenizer.pad_token_id
    eval_set = _to_samples(eval_chunks[:config.eval_samples], config.seq_len, pad)
    clients = [_to_samples([train_chunks[i] for i in indices], config.seq_len, pad)
               for indices in client_indices]
    return eval_set, clients


def _deal_by_source(sources: list[str], config: RunConfig, rng) -> list[np.ndarray]:
    by_source: dict[str, list[int]] = {}
    for index, source in enumerate(sources):
        by_source.setdefault(source, []).append(index)
    names = sorted(by_source)
    rng.shuffle(names)
    holdings: list[list[int]] = [[] for _ in range(config.num_clients)]
    for name in names:  # each whole source to the client holding the least so far
        neediest = min(range(config.num_clients), key=lambda k: len(holdings[k]))
        if len(holdings[neediest]) >= config.samples_per_client:
            break
        holdings[neediest].extend(by_source[name])
    short = [k for k, held in enumerate(holdings) if len(held) < config.samples_per_client]
    if short:
        raise ConfigError(f"partition=by-source: not enough data for client {short[0]} "
                          f"({len(names)} sources); lower samples_per_client or num_clients")
    return [rng.permutation(held)[:config.samples_per_client] for held in holdings]


def _chunk(ids: list[int], seq_len: int) -> list[list[int]]:
    """Consecutive windows of seq_len tokens; a short tail is kept if it is a quarter window."""
    chunks = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)]
    if chunks and len(chunks[-1]) < seq_len // 4:
        chunks.pop()
    return chunks


def _to_samples(chunks: list[list[int]], seq_len: int, pad_id: int) -> Samples:
    ids = np.full((len(chunks), seq_len), pad_id, dtype=np.int32)
    mask = np.zeros((len(chunks), seq_len), dtype=np.int8)
    for row, chunk in enumerate(chunks):
        ids[row, :len(chunk)] = chunk
        mask[row, :len(chunk)] = 1
    return Samples(ids, mask)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
