"""Nothing in a client's reply is taken on trust: a reply that names a file the round did not
ask for, holds tensors of another shape or dtype, claims an impossible example count or another
client's partition is that client's error, and the round goes on with the others
(engine.app.server.reply_checks, through engine.app.server.replies)."""

import math
import os

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from engine.app import shared_weights
from engine.app.server.aggregation import fold_replies
from engine.app.server.replies import RoundReplies
from engine.app.server.reply_checks import ReplyRules
from engine.app.server.roster import Roster
from engine.app.transfer import VARIATE_RECORD
from engine.core import events as ev

pytestmark = pytest.mark.usefixtures("serverapp_identity")

MODEL = {"layer.weight": torch.ones(4, 3), "layer.bias": torch.zeros(3)}
HELD = [10, 10]  # samples per partition
NODES = {0: 101, 1: 102}


class Grid:
    """Flower's Grid as the round loop uses it; each node's reply is set by the test."""

    def __init__(self, replies):
        self.replies = replies  # node -> the reply it sends
        self.node_of = {}

    def get_node_ids(self):
        return [101, 102]

    def push_messages(self, messages):
        ids = [f"m{node}" for node in (m.metadata.dst_node_id for m in messages)]
        self.node_of.update(zip(ids, (m.metadata.dst_node_id for m in messages)))
        return ids

    def pull_messages(self, message_ids):
        pulled = [(i, self.replies.pop(self.node_of[i])) for i in message_ids]
        return [reply for _, reply in pulled]


def arrays(tensors, dtype=np.float32):
    return ArrayRecord({name: Array(t.numpy().astype(dtype)) for name, t in tensors.items()})


def reply(node, *, partition, examples=8, weights=None, file=None):
    content = RecordDict(
        {"metrics": MetricRecord({"partition-id": partition, "train-loss": 1.0,
                                  "num-examples": examples, "steps": 2, "train-seconds": 0.5})}
    )  # fmt: skip
    if file is not None:
        content[shared_weights.REPLY_RECORD] = shared_weights.naming(file)
    else:
        content["arrays"] = arrays(MODEL if weights is None else weights)
    request = Message(
        RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train"
    )
    message = Message(content, reply_to=request)
    message.metadata.__dict__["_src_node_id"] = node
    return message


def collect(second_reply, reply_file=lambda client: None, roster=None, variates=False):
    """Client 0 sends a good reply and client 1 `second_reply`; what the round made of them."""
    roster = roster or Roster(num_clients=2, client_of_node={101: 0, 102: 1})
    grid = Grid({101: reply(101, partition=0), 102: second_reply})
    published = []
    replies = RoundReplies(
        grid,
        roster,
        publish=lambda type_, **fields: published.append(ev.make(type_, **fields)),
        read_commands=lambda: None,
        timeout=30,
        rules=ReplyRules.of(MODEL, "fp32", HELD, reply_file, variates=variates),
    )
    messages = [
        Message(RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train")
        for node in (101, 102)
    ]
    weights = {name: tensor.clone() for name, tensor in MODEL.items()}
    aggregate = fold_replies(replies.collect(1, messages), weights)
    errors = [e["message"] for e in published if e["type"] == ev.ERROR]
    return replies, aggregate, errors


def refused(second_reply, who="client 1", **options):
    replies, aggregate, errors = collect(second_reply, **options)
    assert replies.replied == [0] and aggregate is not None  # the round went on without it
    (error,) = errors
    prefix = f"{who} failed in round 1: "
    assert error.startswith(prefix)
    return error[len(prefix) :]


def test_an_honest_reply_through_the_expected_file_is_folded_in(tmp_path):
    global_file = tmp_path / "train-r1.safetensors"
    expected = shared_weights.reply_file(global_file, 1)
    shared_weights.write(expected, {name: t * 3 for name, t in MODEL.items()}, "fp32")

    replies, aggregate, errors = collect(
        reply(102, partition=1, file=expected),
        reply_file=lambda client: shared_weights.reply_file(global_file, client),
    )

    assert errors == [] and replies.replied == [0, 1]
    assert aggregate.train_loss == 1.0


@pytest.mark.parametrize("examples", [-1, 0, math.nan, 1e12, 2.5, 11, [8]])
def test_an_example_count_that_cannot_be_is_refused(examples):
    why = refused(reply(102, partition=1, examples=examples))
    assert why == f"its reply claims {examples!r} examples; partition 1 holds 10"


def test_a_tensor_of_another_shape_is_refused_even_one_that_would_broadcast():
    weights = {"layer.weight": torch.ones(1, 3), "layer.bias": torch.zeros(3)}
    why = refused(reply(102, partition=1, weights=weights))
    assert why == "its weights' layer.weight is [1, 3], the model's is [4, 3]"


def test_tensors_of_another_dtype_or_names_are_refused():
    wide = ArrayRecord({n: Array(t.numpy().astype(np.float64)) for n, t in MODEL.items()})
    message = reply(102, partition=1)
    message.content["arrays"] = wide
    assert refused(message) == "its weights' layer.weight is float64, the run sends float32"
    missing = refused(reply(102, partition=1, weights={"layer.weight": torch.ones(4, 3)}))
    assert missing == "its weights do not fit the model: missing ['layer.bias'], unexpected []"


@pytest.mark.parametrize("named", ["other.safetensors", "/etc/hostname"])
def test_a_file_the_round_did_not_ask_for_is_never_opened(tmp_path, named):
    global_file = tmp_path / "train-r1.safetensors"
    other = tmp_path / named
    if not other.is_absolute() or not other.exists():
        shared_weights.write(other, MODEL, "fp32")  # a valid weights file: the path decides
    why = refused(
        reply(102, partition=1, file=other),
        reply_file=lambda client: shared_weights.reply_file(global_file, client),
    )
    assert why == f"its reply names the file {str(other)!r}, not the one this round expects"


def test_a_file_is_refused_where_weights_do_not_go_through_shared_memory(tmp_path):
    file = tmp_path / "train-r1-client1.safetensors"
    shared_weights.write(file, MODEL, "fp32")
    why = refused(reply(102, partition=1, file=file))  # a served run: reply_file gives None
    assert "not the one this round expects" in why


def test_the_expected_name_linked_to_another_file_is_refused(tmp_path):
    global_file = tmp_path / "train-r1.safetensors"
    elsewhere = tmp_path / "elsewhere.safetensors"
    shared_weights.write(elsewhere, MODEL, "fp32")
    expected = shared_weights.reply_file(global_file, 1)
    os.symlink(elsewhere, expected)
    why = refused(
        reply(102, partition=1, file=expected),
        reply_file=lambda client: shared_weights.reply_file(global_file, client),
    )
    assert why == f"its weights file {expected.name} is not a regular file"


def test_a_reply_without_the_metrics_the_record_reads_is_refused():
    message = reply(102, partition=1)
    del message.content.metric_records["metrics"]["steps"]
    assert refused(message) == "its reply's steps is 'None', not a number"


def test_a_client_cannot_claim_another_clients_partition_nor_one_the_run_lacks():
    assert refused(reply(102, partition=0)) == (
        "its reply claims partition 0, its node is client 1's"
    )
    assert refused(reply(102, partition=7)) == "its reply names partition 7; this run has 0-1"


def test_an_unknown_node_claiming_a_live_clients_partition_does_not_evict_it():
    roster = Roster(num_clients=2, client_of_node={101: 0})  # node 102 is not known yet
    why = refused(reply(102, partition=0), who="node 102", roster=roster)
    assert why == "its reply claims partition 0, which node 101 holds"
    assert roster.client(101) == 0 and roster.dead_nodes == {}


def with_variate(variate):
    message = reply(102, partition=1)
    message.content[VARIATE_RECORD] = arrays(variate)
    return message


def test_a_control_variate_that_does_not_fit_the_model_or_the_run_is_refused():
    bent = {"layer.weight": torch.ones(4, 1), "layer.bias": torch.zeros(3)}
    assert refused(with_variate(bent), variates=True) == (
        "its control variates' layer.weight is [4, 1], the model's is [4, 3]"
    )
    assert refused(with_variate(MODEL)) == (
        "its reply carries control variates, which this run's strategy does not use"
    )
    replies, _, errors = collect(with_variate(MODEL), variates=True)
    assert errors == [] and replies.replied == [0, 1]


def test_a_control_variate_file_must_be_the_one_beside_the_clients_weights(tmp_path):
    global_file = tmp_path / "train-r1.safetensors"

    def expected(client):
        return shared_weights.reply_file(global_file, client)

    shared_weights.write(expected(1), MODEL, "fp32")
    beside, elsewhere = shared_weights.variate_file(expected(1)), tmp_path / "c1.safetensors"
    for path in (beside, elsewhere):
        shared_weights.write(path, MODEL, "fp32")

    def naming_variate(path):
        message = reply(102, partition=1, file=expected(1))
        message.content[VARIATE_RECORD] = shared_weights.naming(path)
        return message

    replies, _, errors = collect(naming_variate(beside), reply_file=expected, variates=True)
    assert errors == [] and replies.replied == [0, 1]
    assert refused(naming_variate(elsewhere), reply_file=expected, variates=True) == (
        f"its reply names the file {str(elsewhere)!r}, not the one this round expects"
    )
