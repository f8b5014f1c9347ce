"""Real runs of what LLM fine-tuning needs: LoRA adapters, mixed precision, half-size transfer,
and the best model exported as a standalone folder."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.core import events as ev
from engine.core.config_files import load_config
from engine.ml import data, task
from engine.ml.model_export import export_model
from tests.e2e.test_real_runs import finish, of_type, start

pytestmark = pytest.mark.e2e


def completed_run(tmp_path, overrides):
    controller, _ = start(tmp_path, overrides)
    status, events = finish(controller)
    assert status == "completed"
    return controller.run_dir, {e["round"]: e for e in of_type(events, ev.ROUND_DONE)}, events


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    """The default config in full fine-tuning, fp32 everywhere: what the others compare with."""
    return completed_run(tmp_path_factory.mktemp("fp32"), ["rounds=2"])


def exported_eval_loss(run_dir, out):
    """Export the run's best model, check it generates, and recompute its central eval loss."""
    export_model(run_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("def main(", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 4
    config = load_config(run_dir / "config.toml")
    return task.evaluate(
        model,
        data.load_eval_samples(config),
        batch_size=config.eval_batch_size,
        device=torch.device("cpu"),
    )


def test_lora_sends_only_adapters_learns_and_exports_a_merged_model(tmp_path, fp32_run):
    _, full_rounds, _ = fp32_run
    run_dir, rounds, events = completed_run(tmp_path, ["rounds=3", "lora.enabled=true"])

    (info,) = of_type(events, ev.MODEL_INFO)
    assert info["lora_r"] == 8 and info["trainable_params"] < 0.02 * info["total_params"]
    for number in (1, 2, 3):
        assert 0 < rounds[number]["bytes_received"] <= 0.02 * full_rounds[1]["bytes_received"]
    assert (
        rounds[3]["eval_loss"]
        < rounds[2]["eval_loss"]
        < rounds[1]["eval_loss"]
        < rounds[0]["eval_loss"]
    )
    best = run_dir / "checkpoints" / "best"
    assert (best / "adapter_model.safetensors").stat().st_size < 100_000  # the adapter only

    recomputed = exported_eval_loss(run_dir, tmp_path / "merged")
    assert recomputed == pytest.approx(events[-1]["best_eval_loss"], abs=1e-4)


def test_a_full_fine_tuning_run_exports_its_best_model(tmp_path, fp32_run):
    run_dir, _, events = fp32_run
    recomputed = exported_eval_loss(run_dir, tmp_path / "exported")
    assert recomputed == pytest.approx(events[-1]["best_eval_loss"], abs=1e-4)


def test_fp16_transfer_halves_the_bytes_and_learns_like_fp32(tmp_path, fp32_run):
    _, full_rounds, _ = fp32_run
    _, rounds, _ = completed_run(tmp_path, ["rounds=2", "transfer_dtype=fp16"])
    for number in (1, 2):
        for direction in ("bytes_sent", "bytes_received"):
            assert rounds[number][direction] <= 0.51 * full_rounds[number][direction]
    assert rounds[2]["eval_loss"] == pytest.approx(full_rounds[2]["eval_loss"], rel=0.02)


def test_flowers_messages_carry_the_same_model_as_shared_memory(tmp_path, fp32_run):
    _, shared_rounds, shared_events = fp32_run
    _, rounds, events = completed_run(tmp_path, ["rounds=2", "shared_memory_weights=false"])
    said = [e["message"] for e in of_type(shared_events, ev.NOTICE)]
    assert any("through shared memory" in message for message in said)
    assert not any("shared memory" in e["message"] for e in of_type(events, ev.NOTICE))
    for number in (1, 2):  # bit for bit (equal example counts: the mean's order cannot matter)
        assert rounds[number]["model_sha256"] == shared_rounds[number]["model_sha256"]
        assert rounds[number]["eval_loss"] == shared_rounds[number]["eval_loss"]


def test_clients_evaluate_the_same_model_through_shared_memory_as_through_flower(tmp_path):
    """`client_eval`'s evaluate messages name the shared file too."""
    losses = {}
    for shared in ("true", "false"):
        overrides = ["rounds=1", "client_eval=true", f"shared_memory_weights={shared}"]
        _, _, events = completed_run(tmp_path / shared, overrides)
        losses[shared] = {(e["round"], e["client"]): e["eval_loss"] for e in events
                          if e["type"] == ev.CLIENT_EVAL}  # fmt: skip
    assert sorted(losses["true"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for client in (0, 1):  # the same initial model: bit for bit
        assert losses["true"][0, client] == losses["false"][0, client]
        # a held-out tenth makes the example counts unequal: the mean's last bits then depend
        # on which reply came first
        assert losses["true"][1, client] == pytest.approx(losses["false"][1, client], rel=1e-5)


def test_bf16_compute_learns_like_fp32(tmp_path, fp32_run):
    _, full_rounds, _ = fp32_run
    _, rounds, events = completed_run(tmp_path, ["rounds=2", "precision=bf16"])
    assert of_type(events, ev.MODEL_INFO)[0]["precision"] == "bf16"
    assert rounds[2]["eval_loss"] == pytest.approx(full_rounds[2]["eval_loss"], rel=0.02)
