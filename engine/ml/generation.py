"""Completions from a causal LM: batched, left-padded generation with the KV cache.

Code evaluation asks the global model (the base model, or a peft model with its adapters) for
completions of many prompts. `generate` runs them in batches through transformers' own
`generate`, left-padded so that every prompt ends where generation starts, and returns the
generated text alone, with how long it took and how many tokens the model produced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from engine.ml.model import autocast

Stop = Callable[[str], str]


@dataclass(frozen=True)
class Generated:
    """What `generate` produced.

    texts: for each prompt, in the prompts' order, its completions (`samples_per_prompt` of
        them), each the generated text alone: no prompt, no special tokens, cut by `stop`.
    seconds: wall time of the whole call (tokenizing, generating, decoding).
    new_tokens: tokens the model generated, over all completions, each up to its end (EOS,
        `stop`'s cut, or `max_new_tokens`); greedy copies of one completion count once.
    """

    texts: list[list[str]]
    seconds: float
    new_tokens: int


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    device: torch.device | str,
    temperature: float = 0.0,
    samples_per_prompt: int = 1,
    seed: int = 0,
    batch_size: int = 8,
    precision: str = "fp32",
    stop: Stop | None = None,
) -> Generated:
    """Complete each prompt `samples_per_prompt` times.

    model: a causal LM (a transformers model or a peft model around one), already on `device`;
        it is put in eval mode for the call and given back in the mode it was in.
    temperature: 0 decodes greedily, and a prompt's samples are then one completion repeated;
        above 0, samples are drawn at that temperature (no top-k or top-p cut), torch's random
        generator seeded with `seed`: the same call gives the same completions, and the
        caller's random state is left as it was.
    batch_size: sequences generated at once; a prompt's samples stay in one batch, so a batch
        holds `batch_size // samples_per_prompt` prompts (at least one). Prompts are batched
        in order of length, which keeps padding short; results come back in the given order.
    precision: "fp32", "bf16" or "fp16": the compute dtype under autocast (the weights stay).
    stop: applied to each decoded completion, returning it cut where it ends (code_eval's cut
        at stop sequences). A sequence also stops generating once `stop` would cut text from
        it (more than trailing whitespace), as it does at EOS; a batch ends when all of its
        sequences have.

    Prompts longer than the model's positions minus `max_new_tokens` are cut from the left:
    the end of the prompt, which the completion continues, is kept.
    """
    if max_new_tokens < 1 or samples_per_prompt < 1 or batch_size < 1:
        raise ValueError("max_new_tokens, samples_per_prompt and batch_size must be at least 1")
    started = time.monotonic()
    device = torch.device(device)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    prompt_ids = _prompt_ids(model, tokenizer, prompts, max_new_tokens)
    sampling = temperature > 0
    sequences_per_prompt = samples_per_prompt if sampling else 1
    prompts_per_batch = max(1, batch_size // sequences_per_prompt)
    by_length = sorted(range(len(prompts)), key=lambda index: len(prompt_ids[index]))
    options: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        num_return_sequences=sequences_per_prompt,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    if sampling:
        options.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        options.update(do_sample=False)
    texts: list[list[str]] = [[] for _ in prompts]
    new_tokens = 0
    was_training = model.training
    model.eval()
    try:
        with _seeded(seed, device) if sampling else nullcontext(), torch.no_grad():
            for start in range(0, len(by_length), prompts_per_batch):
                batch = by_length[start : start + prompts_per_batch]
                batch_ids = [prompt_ids[index] for index in batch]
                completions, counts = _generate_batch(
                    model,
                    tokenizer,
                    batch_ids,
                    options,
                    device=device,
                    precision=precision,
                    stop=stop,
                )
                new_tokens += sum(counts)
                for offset, index in enumerate(batch):
                    first = offset * sequences_per_prompt
                    own = completions[first : first + sequences_per_prompt]
                    texts[index] = own if sampling else own * samples_per_prompt
    finally:
        model.train(was_training)
    return Generated(texts, time.monotonic() - started, new_tokens)


def _prompt_ids(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int
) -> list[list[int]]:
    """Each prompt's token ids, cut from the left to leave room for `max_new_tokens`."""
    positions = _max_positions(model)
    room = None if positions is None else positions - max_new_tokens
    if room is not None and room < 1:
        raise ValueError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's "
            f"{positions} positions"
        )
    ids = tokenizer(list(prompts))["input_ids"]
    for index, tokens in enumerate(ids):
        if not tokens:
            raise ValueError(f"prompt {index} has no tokens")
    return [tokens if room is None else tokens[-room:] for tokens in ids]


def _max_positions(model: Any) -> int | None:
    """The longest sequence the model takes, where its config says (peft models forward it)."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    options: dict[str, Any],
    *,
    device: torch.device,
    precision: str,
    stop: Stop | None,
) -> tuple[list[str], list[int]]:
    """One batch's completions (`num_return_sequences` per prompt, consecutive) and how many
    tokens each has; `options`: transformers' generation arguments."""
    pad_id = options["pad_token_id"]
    width = max(len(tokens) for tokens in prompt_ids)
    input_ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in prompt_ids], device=device)
    attention_mask = torch.tensor(
        [[0] * (width - len(t)) + [1] * len(t) for t in prompt_ids], device=device
    )
    ends = _CompletionEnds(tokenizer, width, stop)
    with autocast(precision, device):
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            stopping_criteria=StoppingCriteriaList([ends]),
            **options,
        )
    generated = output[:, width:].tolist()
    texts = [
        tokenizer.decode(tokens[:count], skip_special_tokens=True)
        for tokens, count in zip(generated, ends.lengths)
    ]
    if stop is not None:
        texts = [stop(text) for text in texts]
    return texts, ends.lengths


class _CompletionEnds(StoppingCriteria):
    """Counts each sequence's generated tokens up to its end, and ends a sequence once `stop`
    would cut it: generating further would only add text that `stop` throws away.

    transformers calls it after each new token, with the prompt (padded to `prompt_width`) and
    everything generated so far; a row it reports done gets padding from then on.
    """

    def __init__(self, tokenizer: Any, prompt_width: int, stop: Stop | None) -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.stop = stop
        self.lengths: list[int] = []
        self.done: list[bool] = []

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if not self.lengths:
            self.lengths, self.done = [0] * len(input_ids), [False] * len(input_ids)
        last_tokens = input_ids[:, -1].tolist()
        for row, token in enumerate(last_tokens):
            if self.done[row]:
                continue
            self.lengths[row] += 1
            self.done[row] = token == self.tokenizer.eos_token_id or self._cut_by_stop(
                input_ids[row, self.prompt_width :]
            )
        return torch.tensor(self.done, device=input_ids.device)  # type: ignore[return-value]

    def _cut_by_stop(self, generated: torch.Tensor) -> bool:
        if self.stop is None:
            return False
        text = self.tokenizer.decode(generated.tolist(), skip_special_tokens=True)
        return len(self.stop(text)) < len(text.rstrip())


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global random generator, which transformers' sampling draws from, seeded; the
    caller's random state comes back afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
