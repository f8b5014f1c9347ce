"""The model being fine-tuned: the embedded tiny OPT or any causal LM that transformers loads."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import EMBEDDED_MODEL, RunConfig
from engine.data import EMBEDDED_VOCAB_SIZE, EOS_ID, PAD_ID
from engine.errors import ConfigError
from engine.hub import check_hub_name

# Small enough to train a round in seconds on one CPU core, big enough to learn Python syntax.
TINY_OPT = dict(vocab_size=EMBEDDED_VOCAB_SIZE, hidden_size=128, num_hidden_layers=2,
                ffn_dim=512, num_attention_heads=4, word_embed_proj_dim=128,
                max_position_embeddings=512, dropout=0.0, attention_dropout=0.0,
                pad_token_id=PAD_ID, bos_token_id=0, eos_token_id=EOS_ID)


def build_model(config: RunConfig, *, pretrained: bool) -> torch.nn.Module:
    """The model the run starts from (`pretrained=True`: with its released weights, as the
    server needs), or the same architecture to load global weights into (clients)."""
    from transformers import AutoConfig, AutoModelForCausalLM, OPTConfig, OPTForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if config.model == EMBEDDED_MODEL:
        if config.seq_len > TINY_OPT["max_position_embeddings"]:
            raise ConfigError(f"seq_len {config.seq_len} exceeds the embedded model's "
                              f"{TINY_OPT['max_position_embeddings']} positions")
        torch.manual_seed(config.seed)
        return OPTForCausalLM(OPTConfig(**TINY_OPT))
    if not Path(config.model).is_dir():
        check_hub_name(config.model, "model")
    try:
        if pretrained:
            return AutoModelForCausalLM.from_pretrained(config.model, torch_dtype=torch.float32)
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.model))
    except (OSError, ValueError) as err:
        message = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise ConfigError(f"cannot load model {config.model!r}: {message}") from None


def resolve_device(config: RunConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} but torch sees no CUDA device")
    return torch.device(config.device)


def state_dict_for_transfer(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable weights as CPU tensors Flower can serialize (bf16 cannot: cast to fp32).
    Tied weights (OPT's lm_head is the embedding) travel once."""
    seen: set[int] = set()
    weights = {}
    for name, tensor in model.state_dict().items():
        pointer = tensor.data_ptr()
        if pointer in seen:
            continue
        seen.add(pointer)
        tensor = tensor.detach().cpu()
        weights[name] = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
    return weights


def load_transferred(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {name for name in missing if name.endswith("lm_head.weight")}
    if unexpected or set(missing) - tied:
        raise ValueError(f"weights do not fit the model: missing {sorted(set(missing) - tied)}, "
                         f"unexpected {sorted(unexpected)}")
