"""Weights through shared memory for clients on the server's machine
(engine.app.shared_weights, engine.app.server.model_delivery): the same values as Flower's
messages, and no file left behind."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from engine.app import shared_weights, transfer
from engine.app.server.aggregation import WeightedMean
from engine.app.server.model_delivery import ModelDelivery
from engine.core.config import RunConfig
from tests.test_guard import CONTROLLER, alive
from tests.waiting import wait_for


@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.LayerNorm(3))


@pytest.mark.parametrize("transfer_dtype", ["fp32", "fp16"])
def test_a_written_file_holds_what_flowers_arrays_would_carry(tmp_path, model, transfer_dtype):
    path = tmp_path / "global-r1.safetensors"
    weights = dict(model.named_parameters())

    size = shared_weights.write(path, weights, transfer_dtype)

    assert size == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left
    arrays = transfer.to_arrays(model, transfer_dtype)
    names, tensors = shared_weights.read(path)
    assert sorted(names) == sorted(weights)
    for name, tensor in tensors:
        assert torch.equal(tensor, transfer.tensor_view(arrays[name]))


def test_a_client_loads_the_file_and_the_server_folds_it_like_a_record(tmp_path, model):
    path = tmp_path / "reply.safetensors"
    shared_weights.write(path, dict(model.named_parameters()), "fp32")
    receiver = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.LayerNorm(3))

    transfer.load_arrays(receiver, path)

    for (name, sent), received in zip(model.named_parameters(), receiver.parameters()):
        assert torch.equal(sent, received), name
    from_file = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    from_record = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    other = {name: np.full(p.shape, 2.0, np.float32) for name, p in model.named_parameters()}
    for into, source in ((from_file, path), (from_record, transfer.to_arrays(model, "fp32"))):
        mean = WeightedMean(into)
        mean.add(source, 3)
        mean.add(ArrayRecord({name: Array(array) for name, array in other.items()}), 1)
        mean.finish()
    for name in from_file:
        torch.testing.assert_close(from_file[name], from_record[name], rtol=0, atol=0)


def test_weights_for_another_model_are_refused(tmp_path, model):
    path = tmp_path / "other.safetensors"
    shared_weights.write(path, {"unrelated": torch.ones(2)}, "fp32")
    with pytest.raises(ValueError, match="do not fit the model"):
        transfer.load_arrays(model, path)


def test_without_room_in_shared_memory_the_folder_is_refused_with_the_reason():
    why = shared_weights.SharedFolder.create("run-x", needed_bytes=2**62)
    assert isinstance(why, str)
    assert why.startswith("/dev/shm has ") and "a round needs" in why


def test_a_round_is_cleared_and_a_run_removes_only_its_own_leftovers():
    mine = shared_weights.SharedFolder.create(f"test-{os.getpid()}-a", needed_bytes=0)
    other = shared_weights.SharedFolder.create(f"test-{os.getpid()}-b", needed_bytes=0)
    assert not isinstance(mine, str) and not isinstance(other, str)
    try:
        shared_weights.write(mine.global_file(1, "train"), {"w": torch.ones(4)}, "fp32")
        (mine.path / ".half-written.partial").write_bytes(b"x")
        mine.clear()
        assert list(mine.path.iterdir()) == []

        shared_weights.remove_leftovers(f"test-{os.getpid()}-a")
        assert not mine.path.exists() and other.path.is_dir()
    finally:
        mine.remove()
        other.remove()


def test_the_folder_goes_when_the_controller_is_killed(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "global-r1.safetensors").write_bytes(b"weights")
    watched = (
        "import sys, time\n"
        "from engine.system import guard\n"
        f"guard.remove_when_gone({str(folder)!r})\n"
        "guard.watch_controller()\n"
        "print('watching', flush=True)\n"
        "time.sleep(600)\n"
    )
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, watched], stdout=subprocess.PIPE, text=True
    )
    pid = int(controller.stdout.readline())
    try:
        assert controller.stdout.readline() == "watching\n"
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait()
        wait_for(lambda: not alive(pid), timeout=10)
        assert not folder.exists()
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def delivery_for(model, monkeypatch, tmp_path, room, local=True, **config):
    """A ModelDelivery opened with /dev/shm at `tmp_path` holding `room` free bytes; the
    notices it published."""
    monkeypatch.setattr(shared_weights, "SHM_ROOT", tmp_path)
    monkeypatch.setattr(shared_weights.guard, "remove_when_gone", lambda path: None)
    free = shutil.disk_usage(tmp_path)._replace(free=room)
    monkeypatch.setattr(shared_weights.shutil, "disk_usage", lambda path: free)
    notices = []
    delivery = ModelDelivery.open(
        dataclasses.replace(RunConfig(), **config),
        "run",
        model,
        local,
        lambda type_, message: notices.append(message),
    )
    return delivery, notices


def test_local_clients_get_the_model_as_a_file_the_messages_name(model, monkeypatch, tmp_path):
    delivery, notices = delivery_for(model, monkeypatch, tmp_path, room=2**30)

    arrays, config, size = delivery.outgoing(3, "train")

    path = shared_weights.named_file(config)
    assert len(arrays) == 0 and path == delivery.shared.global_file(3, "train")
    assert size == path.stat().st_size
    assert notices == [f"weights go through shared memory: {delivery.shared.path}"]
    delivery.round_over()
    assert not path.exists() and delivery.shared.path.is_dir()
    delivery.close()
    assert not delivery.shared.path.exists()


@pytest.mark.parametrize(
    "room, local, config, notice",
    [
        (10, True, {}, "weights go through Flower's messages: "),  # /dev/shm too small
        (2**30, False, {}, None),  # clients on other hosts, or virtual
        (2**30, True, {"shared_memory_weights": False}, None),
    ],
)
def test_otherwise_the_messages_carry_the_arrays(
    model, monkeypatch, tmp_path, room, local, config, notice
):
    delivery, notices = delivery_for(model, monkeypatch, tmp_path, room, local, **config)

    arrays, message_config, size = delivery.outgoing(1, "evaluate")

    assert delivery.shared is None and shared_weights.named_file(message_config) is None
    assert sorted(arrays) == sorted(name for name, _ in model.named_parameters())
    assert size == arrays.count_bytes()
    assert [n[: len(notice)] for n in notices] == ([notice] if notice else [])
    assert list(tmp_path.iterdir()) == []
    delivery.round_over()
    delivery.close()
