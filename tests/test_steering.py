"""The controller's side of steering (engine.run.steering): a change is checked before anything
is sent, then waits for the ServerApp to say from which round it applies, and the run folder's
config.toml follows."""

import threading

import pytest

from engine.core import commands, events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.errors import ConfigError, FedtuiError
from engine.run import steering as steering_module
from engine.run.steering import RunSteering


def a_server_that_answers(steering_of, next_round=3):
    """What the ServerApp does with a change: one `config_changed` per key, from next_round."""
    sent = []

    def send(command):
        sent.append(command)
        if command["command"] == commands.SET:
            for key, new in command["changes"].items():
                old = getattr(steering_of().config, key)
                event = ev.make(ev.CONFIG_CHANGED, round=next_round, key=key, old=old, new=new)
                threading.Thread(target=steering_of().on_server_event, args=(event,)).start()

    return send, sent


def test_a_change_comes_back_with_the_round_it_applies_from_and_lands_in_config_toml(tmp_path):
    holder = {}
    send, sent = a_server_that_answers(lambda: holder["steering"])
    holder["steering"] = steering = RunSteering(RunConfig(), tmp_path, send, lambda: False)

    answer = steering.change({"local_epochs": 2, "rounds": 5}, source="fedtui set")

    assert sent == [
        {"command": "set", "changes": {"local_epochs": 2}, "source": "fedtui set"}
    ]  # rounds is 5 already: no change to send
    assert [(e["key"], e["round"]) for e in answer["changes"]] == [("local_epochs", 3)]
    assert answer["unanswered"] == []
    assert load_config(tmp_path / "config.toml").local_epochs == 2  # what --resume goes on with
    assert steering.config.local_epochs == 2


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [({"model": "x"}, "model cannot change in a live run"), ({"learning_rate": -1}, "> 0")],
)
def test_a_refused_change_sends_nothing(tmp_path, changes, refusal):
    sent = []
    steering = RunSteering(RunConfig(), tmp_path, sent.append, lambda: False)
    with pytest.raises(ConfigError, match=refusal):
        steering.change(changes, source="monitor")
    assert sent == [] and not (tmp_path / "config.toml").exists()


def test_a_server_that_does_not_answer_in_time_leaves_the_keys_unanswered(tmp_path, monkeypatch):
    monkeypatch.setattr(steering_module, "ACKNOWLEDGE_TIMEOUT_S", 0.2)
    sent = []
    steering = RunSteering(RunConfig(), tmp_path, sent.append, lambda: False)

    answer = steering.change({"proximal_mu": 1.0}, source="monitor")

    assert answer == {"changes": [], "unanswered": ["proximal_mu"]} and len(sent) == 1


def test_an_ended_run_takes_no_change_or_hold(tmp_path):
    steering = RunSteering(RunConfig(), tmp_path, lambda command: None, lambda: True)
    with pytest.raises(FedtuiError, match="the run has ended"):
        steering.change({"local_epochs": 2}, source="monitor")
    with pytest.raises(FedtuiError, match="the run has ended"):
        steering.hold(source="monitor")


def test_hold_and_continue_reach_the_server(tmp_path):
    sent = []
    steering = RunSteering(RunConfig(), tmp_path, sent.append, lambda: False)
    steering.hold(source="fedtui hold")
    steering.continue_run(source="monitor")
    assert sent == [
        {"command": "hold", "source": "fedtui hold"},
        {"command": "continue", "source": "monitor"},
    ]
