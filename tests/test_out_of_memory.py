"""A client that runs out of GPU memory is reported as that, naming its device."""

import pytest
import torch

from engine.app.flower_records import error_text
from engine.core import events as ev
from engine.ml import out_of_memory
from engine.ml.out_of_memory import OutOfGpuMemory
from tests.test_replies import collector, train_messages, two_registered_clients

CPU = torch.device("cpu")
# torch 2.x's text for a failed CUDA allocation
TORCH_TEXT = (
    "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.11 GiB "
    "of which 3.44 GiB is free. Process 1234 has 75.66 GiB memory in use. Of the allocated "
    "memory 74.90 GiB is allocated by PyTorch, and 250.00 MiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
)


def test_the_message_names_the_physical_gpu_the_client_is_pinned_to():
    text = out_of_memory.describe(
        TORCH_TEXT, torch.device("cuda:0"), visible="2", name="NVIDIA H100 80GB HBM3"
    )
    assert text.startswith(
        "out of GPU memory on cuda:0 (GPU 2, NVIDIA H100 80GB HBM3) allocating 20.00 GiB; lower"
    )
    assert "train_batch_size" in text and "\n" not in text


def test_without_pinning_the_gpu_is_the_one_torch_names():
    text = out_of_memory.describe("CUDA out of memory.", torch.device("cuda:1"), None, None)
    assert text.startswith("out of GPU memory on cuda:1 (GPU 1); ")


def test_torchs_out_of_memory_error_becomes_the_described_one_and_others_pass():
    described = r"^out of GPU memory on cpu:0 \(GPU 0\) allocating"
    with pytest.raises(OutOfGpuMemory, match=described), out_of_memory.named_on(CPU):
        raise torch.OutOfMemoryError(TORCH_TEXT)
    with pytest.raises(ValueError, match="not memory"), out_of_memory.named_on(CPU):
        raise ValueError("not memory")


def test_flowers_wrapping_of_an_exception_reads_as_its_name_and_text():
    assert error_text("<class 'engine.ml.out_of_memory.OutOfGpuMemory'>:<'out of GPU'>") == (
        "OutOfGpuMemory: out of GPU"
    )
    assert error_text("<class 'ValueError'>:<'two\nlines'>") == "ValueError: two\nlines"
    assert error_text("the worker of client 1 died") == "the worker of client 1 died"
    assert error_text("") == "no reason given"


@pytest.mark.usefixtures("serverapp_identity")
def test_a_client_out_of_gpu_memory_fails_as_itself_and_the_round_goes_on_with_the_other():
    roster, grid = two_registered_clients()
    published = []
    described = out_of_memory.describe(TORCH_TEXT, torch.device("cuda:0"), "1", "NVIDIA L4")

    def on_poll():
        grid.reply("m0", client=0)
        grid.reply(
            "m1",
            client=1,
            error=f"<class '{OutOfGpuMemory.__module__}.OutOfGpuMemory'>:<'{described}'>",
        )

    replies = collector(grid, roster, published, on_poll)
    assert len(list(replies.collect(1, train_messages([101, 102])))) == 1
    (error,) = [e for e in published if e["type"] == ev.ERROR]
    assert error["client"] == 1
    assert error["message"].startswith(
        "client 1 failed in round 1: OutOfGpuMemory: out of GPU memory on cuda:0 (GPU 1, NVIDIA L4)"
    )
    assert replies.shortfall(1, required=2).startswith("round 1: 1 client(s) replied")
