"""Tokenized samples, and how a corpus is split into an eval set and one partition per client."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.core.config import RunConfig
from engine.core.errors import ConfigError


@dataclass
class Documents:
    texts: list[str]
    sources: list[str]


@dataclass
class Samples:
    """Token ids, padded to seq_len with the pad id; `mask` is 1 where a token is real;
    `sources`, where known, names each sample's source (a client's partition has them)."""

    ids: np.ndarray
    mask: np.ndarray
    sources: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def held_out(self, evaluated: bool) -> tuple[Samples, Samples]:
        """(trained, held out): with `evaluated` (client_eval), the last tenth of the samples
        (at least one) is kept out of training for the client's own evaluation."""
        count = max(1, len(self) // 10) if evaluated and len(self) > 1 else 0
        cut = len(self) - count
        return self._rows(slice(0, cut)), self._rows(slice(cut, len(self)))

    def _rows(self, rows: slice) -> Samples:
        sources = None if self.sources is None else self.sources[rows]
        return Samples(self.ids[rows], self.mask[rows], sources)


def partition_summary(clients: list[Samples]) -> list[dict]:
    """Per client: its samples, how many distinct sources they come from, and the share of
    the largest one (1.0: a single source) - how non-IID the split is."""
    summary = []
    for client, samples in enumerate(clients):
        sources = samples.sources if samples.sources is not None else np.array([])
        _, counts = np.unique(sources, return_counts=True)
        summary.append(
            {
                "client": client,
                "samples": len(samples),
                "sources": len(counts),
                "largest_source_share": float(counts.max() / counts.sum()) if len(counts) else None,
            }
        )
    return summary


def split(config: RunConfig, documents: Documents, tokenizer) -> tuple[Samples, list[Samples]]:
    """Hold out whole documents for evaluation, then split the rest among clients.

    iid: chunks are shuffled and dealt out evenly. by-source: each source (a stdlib package, a
    repository) goes whole to one client, so clients hold different codebases. dirichlet: each
    client's share of each source is drawn from a Dirichlet distribution (`dirichlet_alpha`:
    small, each client holds few sources; large, close to iid), by flwr-datasets'
    DirichletPartitioner; a client holds at most samples_per_client.
    """
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(documents.texts))
    needed_train = config.num_clients * config.samples_per_client
    eval_chunks: list[list[int]] = []
    train_chunks: list[list[int]] = []
    train_sources: list[str] = []
    # by-source needs the whole corpus to balance sources; iid stops once it has enough.
    enough = needed_train if config.partition == "iid" else needed_train * 4
    for start in range(0, len(order), 256):
        batch = order[start : start + 256]
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
            f"{needed_train} (num_clients x samples_per_client) and {config.eval_samples}"
        )
    if config.partition == "by-source":
        client_indices = _deal_by_source(train_sources, config, rng)
    elif config.partition == "dirichlet":
        client_indices = _deal_dirichlet(train_sources, config)
    else:
        shuffled = rng.permutation(len(train_chunks))
        client_indices = [
            shuffled[k * config.samples_per_client : (k + 1) * config.samples_per_client]
            for k in range(config.num_clients)
        ]
    pad = tokenizer.pad_token_id
    eval_set = _to_samples(eval_chunks[: config.eval_samples], config.seq_len, pad)
    clients = [
        _to_samples(
            [train_chunks[i] for i in indices],
            config.seq_len,
            pad,
            sources=np.array([train_sources[i] for i in indices], dtype=str),
        )
        for indices in client_indices
    ]
    return eval_set, clients


def most_samples(documents: Documents, seq_len: int) -> int:
    """An upper bound, without tokenizing, on the samples `split` can cut from `documents`: a
    token covers at least a byte of text (byte-level BPE exactly; other tokenizers add at most a
    leading-space marker), and `split` adds an end-of-text token to each document."""
    return sum(-(-(len(text.encode()) + 2) // seq_len) for text in documents.texts)


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
        raise ConfigError(
            f"partition=by-source: not enough data for client {short[0]} "
            f"({len(names)} sources); lower samples_per_client or num_clients"
        )
    return [rng.permutation(held)[: config.samples_per_client] for held in holdings]


def _deal_dirichlet(sources: list[str], config: RunConfig) -> list[np.ndarray]:
    from datasets import Dataset
    from flwr_datasets.partitioner import DirichletPartitioner

    pool = Dataset.from_dict({"source": sources, "index": list(range(len(sources)))})
    partitioner = DirichletPartitioner(
        num_partitions=config.num_clients,
        partition_by="source",
        alpha=config.dirichlet_alpha,
        min_partition_size=min(config.samples_per_client, config.train_batch_size),
        seed=config.seed,
    )
    partitioner.dataset = pool
    try:
        partitions = [partitioner.load_partition(k)["index"] for k in range(config.num_clients)]
    except ValueError as err:  # no draw gave every client its minimum
        raise ConfigError(f"partition=dirichlet: {err}") from None
    return [np.array(indices[: config.samples_per_client]) for indices in partitions]


def _chunk(ids: list[int], seq_len: int) -> list[list[int]]:
    """Consecutive windows of seq_len tokens; a short tail is kept if it is a quarter window."""
    chunks = [ids[i : i + seq_len] for i in range(0, len(ids), seq_len)]
    if chunks and len(chunks[-1]) < seq_len // 4:
        chunks.pop()
    return chunks


def _to_samples(
    chunks: list[list[int]], seq_len: int, pad_id: int, sources: np.ndarray | None = None
) -> Samples:
    ids = np.full((len(chunks), seq_len), pad_id, dtype=np.int32)
    mask = np.zeros((len(chunks), seq_len), dtype=np.int8)
    for row, chunk in enumerate(chunks):
        ids[row, : len(chunk)] = chunk
        mask[row, : len(chunk)] = 1
    return Samples(ids, mask, sources)
