"""A random-init model of a real architecture's exact shape, with a tokenizer, saved offline.

    python -m benchmarks.make_model llama-135m /tmp/llama-135m
    fedtui run --set model=/tmp/llama-135m --set seq_len=128 ...

Benchmarks and tests need realistic sizes without a model hub: the shapes below are those of
the released checkpoints (parameter counts match to the last parameter); the weights are a
seeded random init. The tokenizer is fedtui's embedded byte-level BPE (4,096 tokens, trained on
the standard library): the model's embedding keeps its real vocabulary size, the tokenizer just
uses the first ids, which changes neither time nor memory per token.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHAPES = {
    # facebook/opt-125m
    "opt-125m": (
        "opt",
        dict(
            vocab_size=50272,
            hidden_size=768,
            num_hidden_layers=12,
            ffn_dim=3072,
            num_attention_heads=12,
            word_embed_proj_dim=768,
            max_position_embeddings=2048,
            do_layer_norm_before=True,
        ),
    ),
    # facebook/opt-350m (the seed report's model): 512-wide embeddings projected to 1024
    "opt-350m": (
        "opt",
        dict(
            vocab_size=50272,
            hidden_size=1024,
            num_hidden_layers=24,
            ffn_dim=4096,
            num_attention_heads=16,
            word_embed_proj_dim=512,
            max_position_embeddings=2048,
            do_layer_norm_before=False,
        ),
    ),
    # HuggingFaceTB/SmolLM-135M: llama architecture, grouped-query attention, tied embeddings
    "llama-135m": (
        "llama",
        dict(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=True,
        ),
    ),
}


def make_model(shape: str, out: Path, seed: int = 0) -> int:
    """Write `shape` with random weights and the embedded tokenizer to `out`; the parameter
    count."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

    from engine.core.config import RunConfig
    from engine.ml import data

    architecture, sizes = SHAPES[shape]
    special = dict(bos_token_id=0, pad_token_id=data.PAD_ID, eos_token_id=data.EOS_ID)
    config_class = OPTConfig if architecture == "opt" else LlamaConfig
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_class(**sizes, **special), dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    data.load_tokenizer(RunConfig()).save_pretrained(out)
    return sum(param.numel() for param in model.parameters())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        print(f"make_model: {args.out} exists and is not empty", file=sys.stderr)
        return 2
    count = make_model(args.shape, args.out, args.seed)
    print(f"{args.shape}: {count:,} parameters ({count * 4 / 1e9:.2f} GB fp32) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
