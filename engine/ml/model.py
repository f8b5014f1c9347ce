"""The model being fine-tuned: the embedded tiny OPT or any causal LM that transformers loads,
with LoRA adapters (peft) when the config asks for them.

Every process (ServerApp, each ClientApp) loads the base model once, straight from its weights
(no random init that is then overwritten); only the trainable weights travel between them: the
whole model in full fine-tuning, the adapters with LoRA.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM
from transformers.utils import logging as hf_logging

from engine.core.config import EMBEDDED_MODEL, RunConfig
from engine.core.errors import ConfigError
from engine.ml.data import EMBEDDED_MAX_POSITIONS, EMBEDDED_VOCAB_SIZE, EOS_ID, PAD_ID
from engine.ml.hub import check_hub_name

# Small enough to train a round in seconds on one CPU core, big enough to learn Python syntax.
TINY_OPT: dict[str, Any] = dict(
    vocab_size=EMBEDDED_VOCAB_SIZE,
    hidden_size=128,
    num_hidden_layers=2,
    ffn_dim=512,
    num_attention_heads=4,
    word_embed_proj_dim=128,
    max_position_embeddings=EMBEDDED_MAX_POSITIONS,
    dropout=0.0,
    attention_dropout=0.0,
    pad_token_id=PAD_ID,
    bos_token_id=0,
    eos_token_id=EOS_ID,
)

_COMPUTE_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(config: RunConfig) -> torch.nn.Module:
    """The model the run starts from: the base model with its released weights (the embedded
    model: its seeded init) and, with LoRA, fresh adapters (seeded, so every process agrees)."""
    model = load_base_model(config)
    if config.lora.enabled:
        model = add_lora(model, config)
    return model


def load_base_model(config: RunConfig) -> torch.nn.Module:
    quiet_transformers()
    if config.model == EMBEDDED_MODEL:
        if config.seq_len > TINY_OPT["max_position_embeddings"]:
            raise ConfigError(
                f"seq_len {config.seq_len} exceeds the embedded model's "
                f"{TINY_OPT['max_position_embeddings']} positions"
            )
        torch.manual_seed(config.seed)
        return OPTForCausalLM(OPTConfig(**TINY_OPT))
    if not Path(config.model).is_dir():
        check_hub_name(config.model, "model")
    try:
        # the model the user named; no remote code runs (SECURITY.md)
        return AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)  # nosec B615
    except (OSError, ValueError) as err:
        message = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise ConfigError(f"cannot load model {config.model!r}: {message}") from None


def quiet_transformers() -> None:
    """No progress bars or advice from transformers in our processes' output and logs."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def add_lora(model: torch.nn.Module, config: RunConfig) -> torch.nn.Module:
    # heavy: only LoRA runs pay for importing peft (each round's ClientApp is a new process)
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    targets = None if lora.target_modules == "auto" else list(lora.target_modules)
    torch.manual_seed(config.seed)
    try:
        with warnings.catch_warnings():  # peft reads a transformers property deprecated for v6
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(
                model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=targets,
                    task_type="CAUSAL_LM",
                ),
            )
    except ValueError as err:  # no such modules, or no default for this architecture
        raise ConfigError(f"lora: {str(err).splitlines()[0]}") from None


def resolve_device(config: RunConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} but torch sees no CUDA device")
    return torch.device(config.device)


def resolve_precision(config: RunConfig, device: torch.device) -> str:
    """ "auto": bf16 where the GPU computes it natively, else fp32."""
    if config.precision != "auto":
        return config.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Mixed-precision compute; the weights themselves stay fp32."""
    dtype = _COMPUTE_DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def checkpoint_activations(model: torch.nn.Module, enabled: bool) -> None:
    """Gradient (activation) checkpointing on or off; transformers 5 renamed the methods."""
    get_base_model = getattr(model, "get_base_model", None)  # peft's wrapper around the model
    base: Any = get_base_model() if get_base_model is not None else model
    if hasattr(base, "activation_checkpointing_enable"):
        if enabled:
            base.activation_checkpointing_enable({"use_reentrant": False})
        else:
            base.activation_checkpointing_disable()
    elif enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weights that are trained, sent and aggregated: every parameter in full fine-tuning,
    the adapters with LoRA. Tied weights (OPT's lm_head is its embedding) appear once."""
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    total = sum(param.numel() for param in model.parameters())
    return sum(param.numel() for param in trainable_weights(model).values()), total


def model_info(
    model: torch.nn.Module, config: RunConfig, device: torch.device, precision: str
) -> dict[str, Any]:
    """What a run's model is, as the `model_info` event records it."""
    trainable, total = parameter_counts(model)
    return {
        "model": config.model,
        "total_params": total,
        "trainable_params": trainable,
        "precision": precision,
        "transfer_dtype": config.transfer_dtype,
        "device": str(device),
        "lora_r": config.lora.r if config.lora.enabled else None,
        "gradient_checkpointing": config.gradient_checkpointing,
    }


@torch.no_grad()
def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` (named as `trainable_weights` names them, any float dtype) into the model."""
    targets = trainable_weights(model)
    check_names(targets, weights)
    for name, tensor in weights.items():
        targets[name].copy_(tensor)


def check_names(targets: Iterable[str], weights: Iterable[str]) -> None:
    """Weights sent for another model (another architecture, LoRA or not) are refused."""
    expected, got = set(targets), set(weights)
    if expected != got:
        raise ValueError(
            f"weights do not fit the model: missing {sorted(expected - got)[:5]}, "
            f"unexpected {sorted(got - expected)[:5]}"
        )
