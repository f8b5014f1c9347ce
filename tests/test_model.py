"""The model: loaded once from its weights, with LoRA adapters when asked; what trains travels."""

import dataclasses

import numpy as np
import pytest
import torch

from engine.app import transfer
from engine.core.config import Lora, RunConfig
from engine.core.errors import ConfigError
from engine.ml.model import (
    load_base_model,
    load_model,
    load_weights,
    parameter_counts,
    resolve_precision,
    trainable_weights,
)

LORA = RunConfig(lora=Lora(enabled=True))


def test_full_fine_tuning_trains_and_sends_every_weight_once():
    model = load_model(RunConfig())
    weights = trainable_weights(model)
    trainable, total = parameter_counts(model)
    assert trainable == total == sum(w.numel() for w in weights.values())
    assert "lm_head.weight" not in weights  # tied to the embedding: it travels once


def test_lora_trains_only_adapters_on_peft_defaults_for_the_architecture():
    model = load_model(LORA)
    weights = trainable_weights(model)
    assert weights and all(".lora_A." in name or ".lora_B." in name for name in weights)
    assert {name.split(".lora_")[0].rsplit(".", 1)[1] for name in weights} == {"q_proj", "v_proj"}
    trainable, total = parameter_counts(model)
    assert trainable / total < 0.02


def test_lora_targets_and_rank_come_from_the_config():
    config = dataclasses.replace(LORA, lora=Lora(enabled=True, r=4, target_modules=["fc1"]))
    weights = trainable_weights(load_model(config))
    assert {name.split(".lora_")[0].rsplit(".", 1)[1] for name in weights} == {"fc1"}
    assert all(4 in tensor.shape for tensor in weights.values())


def test_an_unknown_lora_target_is_one_clear_config_error():
    config = dataclasses.replace(LORA, lora=Lora(enabled=True, target_modules=["nope"]))
    with pytest.raises(ConfigError, match="^lora: "):
        load_model(config)


def test_every_process_builds_the_same_starting_model():
    first, second = (trainable_weights(load_model(LORA)) for _ in range(2))
    assert transfer.fingerprint(first) == transfer.fingerprint(second)


def test_weights_sent_by_one_process_load_into_another():
    sender, receiver = load_model(LORA), load_model(LORA)
    with torch.no_grad():
        for tensor in trainable_weights(sender).values():
            tensor.normal_()
    arrays = transfer.to_arrays(sender, "fp32")
    transfer.load_arrays(receiver, arrays)
    assert len(arrays) == 0  # emptied as it was read
    assert transfer.fingerprint(trainable_weights(receiver)) == transfer.fingerprint(
        trainable_weights(sender)
    )


def test_fp16_transfer_halves_the_bytes_and_rounds_like_fp16():
    model = load_model(RunConfig())
    full, half = transfer.to_arrays(model, "fp32"), transfer.to_arrays(model, "fp16")
    assert half.count_bytes() < 0.51 * full.count_bytes()
    name = next(iter(half))
    expected = trainable_weights(model)[name].detach().half()
    torch.testing.assert_close(transfer.tensor_view(half[name]), expected, rtol=0, atol=0)


def test_a_tensor_view_reads_the_array_bytes_without_copying():
    from flwr.app import Array

    array = Array(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    view = transfer.tensor_view(array)
    assert view.shape == (2, 3, 4) and view[1, 2, 3] == 23
    assert view.numpy().base is not None  # a view over the bytes, not a fresh array


def test_weights_of_another_model_are_refused_naming_what_is_missing():
    model = load_model(LORA)
    full = {
        name: tensor.detach() for name, tensor in trainable_weights(load_model(RunConfig())).items()
    }
    with pytest.raises(ValueError, match="missing .*lora_A"):
        load_weights(model, full)


@pytest.mark.parametrize(
    "precision, expected", [("auto", "fp32"), ("bf16", "bf16"), ("fp32", "fp32")]
)
def test_auto_precision_is_fp32_without_a_gpu(precision, expected):
    config = RunConfig(precision=precision)
    assert resolve_precision(config, torch.device("cpu")) == expected


def test_the_base_model_of_a_lora_run_is_the_plain_model():
    base = load_base_model(LORA)
    assert parameter_counts(base)[0] == parameter_counts(base)[1]
