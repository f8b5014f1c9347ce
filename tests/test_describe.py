"""Every event type has one plain sentence, saying its key fields, for every view to print."""

import dataclasses

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.describe import SENTENCES, describe
from engine.core.units import byte_size, duration, parameter_count

CONFIG = dataclasses.replace(RunConfig(), rounds=8, num_clients=2).to_dict()
H100 = {
    "index": 0,
    "name": "NVIDIA H100",
    "memory_total": 80 << 30,
    "memory_used": 21 << 30,
    "utilization": 87,
    "lost": False,
}

# type: (a full event's fields, what its sentence must say). A new event type needs a line here.
EXAMPLES = {
    ev.RUN_STARTED: (
        dict(run_id="20261125-101500-default", config=CONFIG, version="0.1.0"),
        [
            "run 20261125-101500-default started",
            "embedded:tiny-opt",
            "FedProx mu=0.1",
            "2 clients",
            "8 rounds",
        ],
    ),
    ev.RUN_RESUMED: (dict(from_round=3, config=CONFIG), ["resumed after round 3", "to round 8"]),
    ev.NOTICE: (dict(message="preparing data"), ["preparing data"]),
    ev.CLIENT_EVAL: (
        dict(round=2, client=1, eval_loss=7.12345, examples=3),
        ["client 1", "round 2", "eval loss 7.1235", "3 held-out samples"],
    ),
    ev.PARTITION_SUMMARY: (
        dict(
            partition="dirichlet",
            clients=[
                dict(client=0, samples=64, sources=2, largest_source_share=0.9),
                dict(client=1, samples=64, sources=5, largest_source_share=0.4),
            ],
        ),
        ["dirichlet partition", "64 samples a client", "2-5 sources a client", "40-90%"],
    ),
    ev.MODEL_INFO: (
        dict(
            model="facebook/opt-350m",
            total_params=331_196_416,
            trainable_params=1_572_864,
            precision="bf16",
            transfer_dtype="fp16",
            device="cuda:0",
            lora_r=8,
            gradient_checkpointing=True,
        ),
        [
            "model facebook/opt-350m",
            "331.2M parameters",
            "1.6M trainable (0.5%)",
            "precision bf16",
            "sent as fp16",
            "on cuda:0",
            "LoRA r=8",
            "gradient checkpointing",
        ],
    ),
    ev.CLIENT_CRASHED: (
        dict(client=1, role="supernode", pid=4242, returncode=-9, round=3, restarting=True),
        [
            "client 1 crashed",
            "supernode (pid 4242) exited with code -9 in round 3",
            "restarting it",
        ],
    ),
    ev.CLIENT_RESTARTED: (
        dict(client=1, role="supernode", pid=4343, attempt=1),
        ["client 1", "supernode started again", "pid 4343", "restart 1"],
    ),
    ev.WAITING_FOR_CLIENTS: (
        dict(joined=[0, 2], missing=[1], seconds_left=570),
        ["2 of 3 joined", "missing: 1", "9:30 left"],
    ),
    ev.CLIENT_JOINED: (
        dict(client=1, node_id=77, address="10.213.0.3", host="lab-b"),
        ["client 1 joined from 10.213.0.3 (lab-b)", "node 77"],
    ),
    ev.PROCESS_STARTED: (
        dict(role="supernode", pid=4242, client=1),
        ["supernode 1 started", "pid 4242"],
    ),
    ev.PROCESS_EXITED: (
        dict(role="superlink", pid=4241, returncode=-15),
        ["superlink exited", "pid 4241", "code -15"],
    ),
    ev.ROUND_STARTED: (
        dict(round=3, clients=2, start_model_sha256="ab12"),
        ["round 3 started", "2 clients"],
    ),
    ev.CLIENT_PROGRESS: (
        dict(round=3, client=1, step=20, steps_total=32, loss=6.1234),
        ["client 1", "round 3", "step 20/32", "loss 6.1234"],
    ),
    ev.CLIENT_ROUND_DONE: (
        dict(round=3, client=0, train_loss=6.5, examples=128, steps=32, seconds=3.5),
        ["client 0 finished round 3", "train loss 6.5000", "128 examples"],
    ),
    ev.ROUND_DONE: (
        dict(
            round=3,
            train_loss=6.25,
            eval_loss=6.875,
            seconds=12.34,
            eval_seconds=0.5,
            bytes_sent=100,
            bytes_received=90,
            best_round=2,
            rounds_without_improvement=1,
        ),
        ["round 3 done", "train loss 6.2500", "eval loss 6.8750", "12.3 s"],
    ),
    ev.CODE_EVAL: (
        dict(
            round=2,
            pass_at={"1": 0.125, "5": 0.4},
            benchmark="humaneval",
            problems=40,
            samples_per_problem=5,
            passed=16,
            generation_seconds=31.5,
            execution_seconds=4.25,
        ),
        ["round 2 code eval", "pass@1 0.125", "pass@5 0.400", "40 problems", "31.5 s", "4.2 s"],
    ),
    ev.GENERATED: (
        dict(round=2, samples=[{"prompt": "def f(", "completion": "x):"}] * 3, seconds=0.4),
        ["round 2", "completed 3 prompts"],
    ),
    ev.CHECKPOINT_SAVED: (
        dict(round=2, kind="best", eval_loss=6.5, path="checkpoints/best"),
        ["saved the best global model", "round 2", "eval loss 6.5000", "checkpoints/best"],
    ),
    ev.CONFIG_CHANGED: (
        dict(round=3, key="learning_rate", old=0.001, new=0.0005, source="fedtui set"),
        ["learning_rate changed from 0.001 to 0.0005", "from round 3", "fedtui set"],
    ),
    ev.HELD: (dict(round=2), ["held after round 2", "until the run continues"]),
    ev.CONTINUED: (dict(round=2, seconds=95.0), ["continued after 1:35 held", "round 3 starts"]),
    ev.EARLY_STOPPING_CHANGED: (
        dict(enabled=True, patience=3, min_delta=0.01),
        ["early stopping on", "patience 3", "min delta 0.01"],
    ),
    ev.GPU_SAMPLE: (
        dict(
            devices=[H100],
            clients={
                "0": {"rss_bytes": 3 << 30, "vram_bytes": 9 << 30, "device": 0, "source": "nvml"},
                "1": {"rss_bytes": 2 << 30, "vram_bytes": None, "device": None, "source": None},
            },
            unavailable=None,
        ),
        ["GPU 0 21.0 GiB of 80.0 GiB", "client 0 9.0 GiB VRAM", "client 1 2.0 GiB host RSS"],
    ),
    ev.WARNING: (
        dict(message="client 1 uses 93% of its GPU's memory", client=1),
        ["warning", "client 1 uses 93% of its GPU's memory"],
    ),
    ev.STOP_REQUESTED: (
        dict(source="signal"),
        ["stop requested (signal)", "ends after the current round"],
    ),
    ev.EARLY_STOP: (
        dict(
            round=5,
            best_round=3,
            best_eval_loss=6.5,
            patience=2,
            reason="no improvement for 2 rounds",
        ),
        [
            "early stop after round 5",
            "no improvement for 2 rounds",
            "best round 3",
            "eval loss 6.5000",
        ],
    ),
    ev.RUN_FINISHED: (
        dict(
            status="completed", rounds_completed=8, best_round=3, best_eval_loss=6.5, seconds=127.6
        ),
        ["run completed", "8 rounds", "best eval loss 6.5000 at round 3", "wall time 2:08"],
    ),
    ev.ERROR: (
        dict(
            message="client 1 failed in round 2: CUDA out of memory",
            source="clientapp",
            client=1,
            round=2,
        ),
        ["error", "client 1 failed in round 2: CUDA out of memory"],
    ),
}


def test_every_event_type_has_a_sentence():
    assert set(SENTENCES) == set(ev.REQUIRED_FIELDS)


@pytest.mark.parametrize("type_", sorted(ev.REQUIRED_FIELDS))
def test_each_sentence_says_the_events_key_fields(type_):
    assert type_ in EXAMPLES, f"add an example event for {type_!r} to EXAMPLES"
    fields, phrases = EXAMPLES[type_]
    sentence = describe(ev.stamp(ev.make(type_, **fields), now=1000.0))
    assert "\n" not in sentence
    for phrase in phrases:
        assert phrase in sentence, sentence


@pytest.mark.parametrize("type_", sorted(ev.REQUIRED_FIELDS))
def test_a_sentence_needs_only_the_required_fields(type_):
    """Old and imported runs carry no more than the schema requires."""
    fields, _ = EXAMPLES[type_]
    event = ev.make(type_, **{name: fields[name] for name in ev.REQUIRED_FIELDS[type_]})
    assert describe(event).strip()


def test_missing_numbers_are_left_out_of_a_round():
    """Round 0 has no train loss; a diverged round's eval loss is recorded as null."""
    assert (
        describe(ev.make(ev.ROUND_DONE, round=0, eval_loss=8.3, train_loss=None, seconds=0.5))
        == "round 0 done: eval loss 8.3000, 0.5 s"
    )
    assert describe(ev.make(ev.ROUND_DONE, round=4, eval_loss=None)) == "round 4 done"


def test_no_gpu_says_why_and_shows_host_memory():
    sentence = describe(
        ev.make(
            ev.GPU_SAMPLE,
            devices=[],
            unavailable="no NVIDIA driver",
            clients={"0": {"rss_bytes": 3 << 30, "vram_bytes": None}},
        )
    )
    assert sentence == "memory: no GPU figures (no NVIDIA driver); client 0 3.0 GiB host RSS"


@pytest.mark.parametrize(
    "seconds, text", [(None, "-"), (0.4, "0:00"), (42, "0:42"), (65, "1:05"), (26_969, "7:29:29")]
)
def test_durations_read_as_a_clock(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    "count, text",
    [(812, "812"), (40_960, "41.0K"), (331_196_416, "331.2M"), (6_738_415_616, "6.7B")],
)
def test_parameter_counts_read_as_model_cards_say(count, text):
    assert parameter_count(count) == text


@pytest.mark.parametrize(
    "count, text", [(None, "-"), (512, "512 B"), (1536, "1.5 KiB"), (9 << 30, "9.0 GiB")]
)
def test_byte_sizes_use_binary_units(count, text):
    assert byte_size(count) == text


def test_the_data_line_says_how_many_instruction_samples_were_cut():
    clients = [
        dict(client=k, samples=24, sources=1, largest_source_share=1.0, truncated=k + 1,
             completion_cut=k)
        for k in (0, 1)
    ]  # fmt: skip
    sentence = describe(ev.make(ev.PARTITION_SUMMARY, partition="iid", clients=clients))
    assert sentence.endswith("; 3 cut at seq_len (1 lost their whole completion)")
