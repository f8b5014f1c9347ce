"""Tokenized samples, and how a corpus is split into an eval set and one partition per client.

Text is tokenized document by document and cut into consecutive windows of seq_len tokens.
Instruction and chat data give one sample per example: prompt, completion and end-of-text
token, truncated to seq_len (a sample keeps its start, so what is cut is the completion's end,
or the whole completion when the prompt alone fills seq_len).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.ml.prompts import render_chat, render_instruction, require_chat_template

# Samples.truncation, per sample
WHOLE, TRUNCATED, COMPLETION_CUT = 0, 1, 2
ARRAYS = ("ids", "mask", "sources", "labels_mask", "truncation")  # Samples' fields, as cached


@dataclass
class Documents:
    """A corpus. data_format=text: each document's text; instruction and chat: each example's
    row (its columns by name) in `examples`. `sources` names each one's source."""

    texts: list[str]
    sources: list[str]
    examples: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.texts) if self.examples is None else len(self.examples)


@dataclass
class Samples:
    """Token ids, padded to seq_len with the pad id; `mask` is 1 where a token is real;
    `sources`, where known, names each sample's source (a client's partition has them).
    Instruction and chat samples also have `labels_mask`, 1 where a token is learned (with
    loss_on=completion, not the prompt's; never padding), and `truncation`, per sample WHOLE,
    TRUNCATED (cut at seq_len) or COMPLETION_CUT (its prompt alone filled seq_len)."""

    ids: np.ndarray
    mask: np.ndarray
    sources: np.ndarray | None = None
    labels_mask: np.ndarray | None = None
    truncation: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def held_out(self, evaluated: bool) -> tuple[Samples, Samples]:
        """(trained, held out): with `evaluated` (client_eval), the last tenth of the samples
        (at least one) is kept out of training for the client's own evaluation."""
        count = max(1, len(self) // 10) if evaluated and len(self) > 1 else 0
        cut = len(self) - count
        return self._rows(slice(0, cut)), self._rows(slice(cut, len(self)))

    def _rows(self, rows: slice) -> Samples:
        def cut(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return Samples(
            self.ids[rows],
            self.mask[rows],
            cut(self.sources),
            cut(self.labels_mask),
            cut(self.truncation),
        )


def partition_summary(clients: list[Samples]) -> list[dict]:
    """Per client: its samples, how many distinct sources they come from, and the share of
    the largest one (1.0: a single source) - how non-IID the split is. Instruction and chat
    samples add how many were `truncated` at seq_len, and of those how many lost their whole
    completion (`completion_cut`: kept, but with loss_on=completion they teach nothing)."""
    summary = []
    for client, samples in enumerate(clients):
        sources = samples.sources if samples.sources is not None else np.array([])
        _, counts = np.unique(sources, return_counts=True)
        row = {
            "client": client,
            "samples": len(samples),
            "sources": len(counts),
            "largest_source_share": float(counts.max() / counts.sum()) if len(counts) else None,
        }
        if samples.truncation is not None:
            row["truncated"] = int((samples.truncation != WHOLE).sum())
            row["completion_cut"] = int((samples.truncation == COMPLETION_CUT).sum())
        summary.append(row)
    return summary


class Unpadded(NamedTuple):
    """A sample before padding."""

    ids: list[int]
    learned_from: int  # its first learned token: the prompt's length with loss_on=completion
    truncation: int


def split(config: RunConfig, documents: Documents, tokenizer) -> tuple[Samples, list[Samples]]:
    """Hold out whole documents (examples) for evaluation, then split the rest among clients.

    iid: samples are shuffled and dealt out evenly. by-source: each source (a stdlib package, a
    repository) goes whole to one client, so clients hold different codebases. dirichlet: each
    client's share of each source is drawn from a Dirichlet distribution (`dirichlet_alpha`:
    small, each client holds few sources; large, close to iid), by flwr-datasets'
    DirichletPartitioner; a client holds at most samples_per_client.
    """
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(documents))
    needed_train = config.num_clients * config.samples_per_client
    eval_sequences: list[Unpadded] = []
    train_sequences: list[Unpadded] = []
    train_sources: list[str] = []
    # by-source needs the whole corpus to balance sources; iid stops once it has enough.
    enough = needed_train if config.partition == "iid" else needed_train * 4
    examples = documents.examples
    if examples is not None and config.data_format == "chat":
        require_chat_template(tokenizer, config.model)
    for start in range(0, len(order), 256):
        batch = order[start : start + 256]
        if examples is None:
            cut = _text_sequences(config, documents.texts, tokenizer, batch)
        else:
            cut = _example_sequences(config, examples, tokenizer, batch)
        for index, sequences in zip(batch, cut):
            if len(eval_sequences) < config.eval_samples:
                eval_sequences.extend(sequences[:4])
            else:
                train_sequences.extend(sequences)
                train_sources.extend([documents.sources[index]] * len(sequences))
        if len(eval_sequences) >= config.eval_samples and len(train_sequences) >= enough:
            break
    if len(eval_sequences) < config.eval_samples or len(train_sequences) < needed_train:
        each = f"of {config.seq_len} tokens" if examples is None else "one per example"
        raise ConfigError(
            f"dataset {config.dataset!r} yields {len(train_sequences)} training and "
            f"{len(eval_sequences)} eval samples ({each}); the config needs "
            f"{needed_train} (num_clients x samples_per_client) and {config.eval_samples}"
        )
    if config.partition == "by-source":
        client_indices = _deal_by_source(train_sources, config, rng)
    elif config.partition == "dirichlet":
        client_indices = _deal_dirichlet(train_sources, config)
    else:
        shuffled = rng.permutation(len(train_sequences))
        client_indices = [
            shuffled[k * config.samples_per_client : (k + 1) * config.samples_per_client]
            for k in range(config.num_clients)
        ]
    pad, per_example = tokenizer.pad_token_id, examples is not None
    eval_set = _to_samples(eval_sequences[: config.eval_samples], config, pad, per_example)
    clients = [
        _to_samples(
            [train_sequences[i] for i in indices],
            config,
            pad,
            per_example,
            sources=np.array([train_sources[i] for i in indices], dtype=str),
        )
        for indices in client_indices
    ]
    return eval_set, clients


def _text_sequences(
    config: RunConfig, texts: list[str], tokenizer, indices: np.ndarray
) -> list[list[Unpadded]]:
    """Each document's consecutive windows of seq_len tokens, every token learned."""
    encoded = tokenizer([texts[i] for i in indices], add_special_tokens=False)
    return [
        [
            Unpadded(chunk, 0, WHOLE)
            for chunk in _chunk(ids + [tokenizer.eos_token_id], config.seq_len)
        ]
        for ids in encoded["input_ids"]
    ]


def _example_sequences(
    config: RunConfig, examples: list[dict[str, Any]], tokenizer, indices: np.ndarray
) -> list[list[Unpadded]]:
    """Each example's one sample: prompt, completion and end-of-text token, truncated to
    seq_len. As TRL's completion-only training, the prompt's tokens are counted by tokenizing
    the prompt alone: the whole text is tokenized as one, so no token is split at the seam."""
    pairs = [_rendered(config, examples[i], tokenizer, i) for i in indices]
    special = config.data_format == "instruction"  # a chat template writes its own special tokens
    prompts = tokenizer([prompt for prompt, _ in pairs], add_special_tokens=special)
    wholes = tokenizer(
        [prompt + completion for prompt, completion in pairs], add_special_tokens=special
    )
    eos, seq_len = tokenizer.eos_token_id, config.seq_len
    sequences = []
    for prompt_ids, ids in zip(prompts["input_ids"], wholes["input_ids"]):
        if ids[-1:] != [eos]:  # a chat template may end its turns with the end-of-text token
            ids = ids + [eos]
        prompt_tokens = len(prompt_ids)
        if len(ids) <= seq_len:
            truncation = WHOLE
        else:
            truncation = COMPLETION_CUT if prompt_tokens >= seq_len else TRUNCATED
        learned_from = prompt_tokens if config.loss_on == "completion" else 0
        sequences.append([Unpadded(ids[:seq_len], learned_from, truncation)])
    return sequences


def _rendered(config: RunConfig, row: dict[str, Any], tokenizer, index) -> tuple[str, str]:
    try:
        if config.data_format == "chat":
            return render_chat(tokenizer, row[config.messages_column])
        return render_instruction(config, row)
    except ConfigError as err:
        raise ConfigError(f"dataset {config.dataset!r}, row {index}: {err}") from None


def most_samples(documents: Documents, seq_len: int) -> int:
    """An upper bound, without tokenizing, on the samples `split` can cut from `documents`: one
    per example; for text, a token covers at least a byte of text (byte-level BPE exactly; other
    tokenizers add at most a leading-space marker), and `split` adds an end-of-text token to
    each document."""
    if documents.examples is not None:
        return len(documents.examples)
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
    sequences: list[Unpadded],
    config: RunConfig,
    pad_id: int,
    per_example: bool,
    sources: np.ndarray | None = None,
) -> Samples:
    """Padded arrays; `per_example` (instruction and chat) samples also get labels_mask and
    truncation."""
    ids = np.full((len(sequences), config.seq_len), pad_id, dtype=np.int32)
    mask = np.zeros((len(sequences), config.seq_len), dtype=np.int8)
    labels_mask = np.zeros_like(mask)
    truncation = np.zeros(len(sequences), dtype=np.int8)
    for row, (tokens, learned_from, cut) in enumerate(sequences):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        labels_mask[row, learned_from : len(tokens)] = 1
        truncation[row] = cut
    if not per_example:
        return Samples(ids, mask, sources)
    return Samples(ids, mask, sources, labels_mask, truncation)
