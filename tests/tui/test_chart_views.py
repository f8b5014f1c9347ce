"""The chart's views as lines: what each one plots from the same runs."""

import dataclasses
import math

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.record.client_state import MEMORY_OVER_TIME_POINTS, merged_pairs
from engine.record.run_state import RunState
from tests.factories import simple_run_events
from tui.chart_lines import LineOptions
from tui.chart_views import (
    bytes_lines,
    loss_lines,
    memory_lines,
    perplexity_lines,
    throughput_lines,
)

GIB = 2**30  # binary units, as every view writes bytes
MIB = 2**20
ALL = LineOptions()


def state_of(events, t0=1000.0):
    return RunState.from_events(
        ev.stamp(ev.make(**event), now=t0 + index) for index, event in enumerate(events)
    )


def by_label(lines):
    return {line.label: (line.xs, line.ys) for line in lines}


def trained(clients=2, rounds=2, tokens=True, seq_len=128, t0=1000.0):
    """A run in which client c trains each round on 10 examples in 2 + c seconds, sending
    1000 * (c + 1) tokens a round, or no token count (a record from before they existed)."""
    config = dataclasses.replace(RunConfig(), num_clients=clients, rounds=rounds, seq_len=seq_len)
    events = [dict(type_=ev.RUN_STARTED, run_id="r", config=config.to_dict())]
    for number in range(1, rounds + 1):
        for client in range(clients):
            done = dict(
                type_=ev.CLIENT_ROUND_DONE,
                round=number,
                client=client,
                train_loss=5.0,
                examples=10,
                steps=3,
                seconds=2.0 + client,
            )
            if tokens:
                done["tokens"] = 1000 * (client + 1)
            events.append(done)
        events.append(dict(type_=ev.ROUND_DONE, round=number, eval_loss=5.0))
    return state_of(events, t0)


def test_perplexity_is_the_exponential_of_every_loss_line():
    state = state_of(simple_run_events())
    losses, perplexities = loss_lines([state], ["r"], ALL), perplexity_lines([state], ["r"], ALL)
    assert [line.label for line in perplexities] == [line.label for line in losses]
    for loss, ppl in zip(losses, perplexities):
        assert ppl.xs == loss.xs
        assert ppl.ys == pytest.approx([math.exp(y) for y in loss.ys])


def test_a_diverged_loss_has_a_huge_perplexity_not_an_overflow():
    events = simple_run_events(rounds=((8.0, None), (1e6, 7.5)))
    lines = by_label(perplexity_lines([state_of(events)], ["r"], ALL))
    assert lines["central eval"][1][1] == pytest.approx(math.exp(700.0))


def test_tokens_per_second_are_each_clients_tokens_over_its_training_time_and_their_sum():
    lines = by_label(throughput_lines([trained()], ["r"], ALL))
    assert lines["client 0"] == ([1.0, 2.0], [500.0, 500.0])
    assert lines["client 1"][1] == pytest.approx([2000 / 3, 2000 / 3])
    assert lines["all clients"][1] == pytest.approx([500 + 2000 / 3] * 2)
    assert list(by_label(throughput_lines([trained()], ["r"], LineOptions(False)))) == [
        "all clients"
    ]


def test_a_record_without_token_counts_estimates_them_from_full_length_samples_and_says_so():
    state = trained(tokens=False, seq_len=128)
    assert state.tokens_estimated
    lines = by_label(throughput_lines([state], ["r"], ALL))
    assert lines["client 0 (est.)"][1] == [10 * 128 / 2.0] * 2  # 1 local epoch


def test_bytes_per_round_are_megabytes_each_way_from_round_1():
    state = state_of(simple_run_events())
    lines = by_label(bytes_lines([state], ["r"], ALL))
    assert lines["sent"] == ([1.0, 2.0], [100 / MIB, 200 / MIB])
    assert lines["received"] == ([1.0, 2.0], [90 / MIB, 180 / MIB])


def test_overlaid_runs_give_one_line_each_in_every_view():
    first, second = trained(), trained(clients=3)
    names = ["a", "b"]
    assert [line.label for line in loss_lines([first, second], names, ALL)] == [
        "a: central eval",
        "b: central eval",
    ]
    assert [line.label for line in throughput_lines([first, second], names, ALL)] == [
        "a: all clients",
        "b: all clients",
    ]
    sent = by_label(bytes_lines([state_of(simple_run_events())] * 2, names, ALL))
    assert sent["a: sent + received"][1] == [190 / MIB, 380 / MIB]


def gpu_sample(rss_gib):
    """A sample of host RSS per client (no GPU): client c uses rss_gib[c]."""
    return dict(
        type_=ev.GPU_SAMPLE,
        devices=[],
        clients={
            str(c): {"rss_bytes": int(gib * GIB), "vram_bytes": None, "source": None}
            for c, gib in enumerate(rss_gib)
        },
        unavailable="no NVIDIA GPU",
    )


def test_memory_is_each_clients_gib_over_the_runs_minutes_and_the_largest_when_overlaid():
    config = dataclasses.replace(RunConfig(), num_clients=2)
    events = [dict(type_=ev.RUN_STARTED, run_id="r", config=config.to_dict())]
    events += [gpu_sample([1.0, 2.0]), gpu_sample([1.5, 0.5])]
    state = state_of(events, t0=0.0)  # samples at 60 s and 120 s: minutes 1/60 and 2/60
    lines = by_label(memory_lines([state], ["r"], ALL))
    assert lines["client 0"] == (pytest.approx([1 / 60, 2 / 60]), pytest.approx([1.0, 1.5]))
    assert lines["client 1"][1] == pytest.approx([2.0, 0.5])
    overlaid = by_label(memory_lines([state, state], ["a", "b"], ALL))
    assert overlaid["a: largest client"][1] == pytest.approx([2.0, 1.5])


def test_memory_of_many_clients_is_their_spread_unless_a_line_each_is_asked_for():
    config = dataclasses.replace(RunConfig(), num_clients=8)
    events = [dict(type_=ev.RUN_STARTED, run_id="r", config=config.to_dict())]
    events.append(gpu_sample([float(c) for c in range(8)]))
    state = state_of(events)
    spread = by_label(memory_lines([state], ["r"], ALL))
    assert {label: ys for label, (_, ys) in spread.items()} == {
        "clients: max": [7.0],
        "clients: median": [3.5],
        "clients: min": [0.0],
    }
    each = memory_lines([state], ["r"], LineOptions(client_lines=True))
    assert [line.label for line in each] == [f"client {c}" for c in range(8)]


def test_memory_over_a_long_run_stays_bounded_and_keeps_its_peak():
    config = dataclasses.replace(RunConfig(), num_clients=1)
    events = [dict(type_=ev.RUN_STARTED, run_id="r", config=config.to_dict())]
    events += [gpu_sample([1.0 + (i == 3333) * 9]) for i in range(10_000)]
    client = state_of(events).clients[0]
    assert len(client.memory_over_time) < 2 * MEMORY_OVER_TIME_POINTS
    assert max(used for _, used in client.memory_over_time) == int(10 * GIB)
    times = [t for t, _ in client.memory_over_time]
    assert times == sorted(times) and times[-1] == 1000.0 + 10_000


def test_merging_neighbours_keeps_the_later_time_and_the_higher_value():
    assert merged_pairs([(1, 5), (2, 3), (3, 1), (4, 8), (5, 2)]) == [(2, 5), (4, 8), (5, 2)]
