"""Completions from the global model: batched with left padding, greedy or seeded sampling."""

import pytest
import torch

from engine.core.config import Lora, RunConfig
from engine.ml.data import EMBEDDED_MAX_POSITIONS, load_tokenizer
from engine.ml.generation import generate
from engine.ml.model import load_model

# Lengths far apart, so that batching pads some prompts by many tokens.
PROMPTS = [
    "x",
    'def add(a, b):\n    """Return the sum of a and b."""\n    return',
    "import os\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(RunConfig())


@pytest.fixture(scope="module")
def model():
    return load_model(RunConfig())


def complete(model, tokenizer, prompts, **options):
    options.setdefault("max_new_tokens", 12)
    return generate(model, tokenizer, prompts, device="cpu", **options)


def test_batched_greedy_completions_equal_those_of_one_prompt_at_a_time(model, tokenizer):
    batched = complete(model, tokenizer, PROMPTS, batch_size=4).texts
    one_at_a_time = [complete(model, tokenizer, [prompt]).texts[0] for prompt in PROMPTS]
    assert batched == one_at_a_time


def test_greedy_generation_is_deterministic(model, tokenizer):
    first, second = (complete(model, tokenizer, PROMPTS, batch_size=3) for _ in range(2))
    assert first.texts == second.texts


def test_a_completion_is_the_generated_text_alone(model, tokenizer):
    prompt = "def frobnicate_the_widgets(widgets):\n"
    (completion,) = complete(model, tokenizer, [prompt]).texts[0]
    assert completion and "frobnicate" not in completion
    assert "</s>" not in completion and "<pad>" not in completion


def test_max_new_tokens_bounds_each_completion(model, tokenizer):
    short = complete(model, tokenizer, PROMPTS, max_new_tokens=4)
    long = complete(model, tokenizer, PROMPTS, max_new_tokens=12)
    assert short.new_tokens <= 4 * len(PROMPTS) < long.new_tokens <= 12 * len(PROMPTS)
    for (head,), (whole,) in zip(short.texts, long.texts):
        assert whole.startswith(head) and len(head) < len(whole)


def test_greedy_samples_of_a_prompt_are_one_completion_generated_once(model, tokenizer):
    once = complete(model, tokenizer, PROMPTS)
    thrice = complete(model, tokenizer, PROMPTS, samples_per_prompt=3)
    assert thrice.texts == [texts * 3 for texts in once.texts]
    assert thrice.new_tokens == once.new_tokens


def test_sampling_gives_each_prompt_its_samples_reproducibly_by_seed(model, tokenizer):
    caller_state = torch.get_rng_state()
    options = dict(temperature=1.0, samples_per_prompt=3, batch_size=6, max_new_tokens=6)
    first = complete(model, tokenizer, PROMPTS, seed=7, **options).texts
    again = complete(model, tokenizer, PROMPTS, seed=7, **options).texts
    other_seed = complete(model, tokenizer, PROMPTS, seed=8, **options).texts
    assert [len(samples) for samples in first] == [3] * len(PROMPTS)
    assert all(len(set(samples)) > 1 for samples in first)
    assert first == again != other_seed
    assert torch.equal(torch.get_rng_state(), caller_state)


def test_a_stop_function_cuts_completions_and_ends_their_generation(model, tokenizer):
    full = complete(model, tokenizer, PROMPTS[1:2], max_new_tokens=24)
    (text,) = full.texts[0]
    marker = text[len(text) // 2 :].strip()[:2]  # a "stop sequence" this completion contains

    def cut_at_marker(completion: str) -> str:
        return completion.split(marker)[0]

    stopped = complete(model, tokenizer, PROMPTS[1:2], max_new_tokens=24, stop=cut_at_marker)
    assert stopped.texts == [[cut_at_marker(text)]]
    assert stopped.new_tokens < full.new_tokens


def test_only_the_end_of_a_prompt_too_long_for_the_model_counts(model, tokenizer):
    body = "value = compute(value)\n" * EMBEDDED_MAX_POSITIONS  # more tokens than positions
    texts = {
        complete(model, tokenizer, [head + body]).texts[0][0]
        for head in ("import os\n", "class Unrelated:\n    pass\n")
    }
    assert len(texts) == 1


def test_a_lora_wrapped_model_generates_and_fresh_adapters_change_nothing(model, tokenizer):
    lora_model = load_model(RunConfig(lora=Lora(enabled=True)))  # peft's get_peft_model
    assert type(lora_model).__name__ == "PeftModelForCausalLM"
    assert (
        complete(lora_model, tokenizer, PROMPTS).texts == complete(model, tokenizer, PROMPTS).texts
    )


@pytest.mark.parametrize("training", [True, False])
def test_the_model_gets_its_mode_back(model, tokenizer, training):
    model.train(training)
    complete(model, tokenizer, PROMPTS[:1], max_new_tokens=2)
    assert model.training is training
