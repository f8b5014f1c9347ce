"""What may change once a run has started, and how a change is checked: between rounds, the keys
declared live; in a fork, anything its parent's weights allow; a value as `--set` checks it."""

import pytest

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.core.live_config import (
    Change,
    change_between_rounds,
    fork_changes,
    parse_changes,
    with_changes,
)


def test_live_keys_change_and_say_what_they_were():
    config, changed = change_between_rounds(
        RunConfig(), parse_changes(["local_epochs=2", "learning_rate=5e-4"])
    )

    assert (config.local_epochs, config.learning_rate) == (2, 5e-4)
    assert changed == [Change("local_epochs", 1, 2), Change("learning_rate", 1e-3, 5e-4)]


def test_a_tables_key_changes_by_its_dotted_name():
    config, changed = change_between_rounds(RunConfig(), {"early_stopping.patience": 4})

    assert config.early_stopping.patience == 4
    assert changed == [Change("early_stopping.patience", 2, 4)]


def test_a_value_that_is_already_so_is_no_change():
    assert change_between_rounds(RunConfig(), {"rounds": 5}) == (RunConfig(), [])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["model=x"], "model cannot change in a live run: it fixed the model every process"),
        (["seq_len=32"], "a fork of the run can have another (fedtui run --from RUN"),
        (["lora.r=4"], "lora.r cannot change in a live run"),
        (["num_clients=3"], "it fixed the processes Flower started"),
        (["partition=by-source"], "it fixed the clients' data"),
        (["lora={r = 2}"], "lora is a table: change its keys one by one"),
        (["learning_rate=-1"], "config key 'learning_rate' must be > 0, got -1.0"),
        (["local_epochs=two"], "config key 'local_epochs' must be int"),
        (["clients_per_round=5"], "must be at most num_clients (2)"),
        (
            ["learning_rat=1e-4"],
            "unknown config key 'learning_rat' (did you mean 'learning_rate'?)",
        ),
        (["learning_rate"], "expects key=value"),
        ([], "no change given"),
    ],
)
def test_a_refused_change_says_why_in_one_line(items, message):
    with pytest.raises(ConfigError) as refused:
        change_between_rounds(RunConfig(), parse_changes(items))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_refusal_among_good_changes_changes_nothing():
    config = RunConfig()
    with pytest.raises(ConfigError):
        change_between_rounds(config, {"local_epochs": 2, "model": "x"})
    assert config.local_epochs == 1  # frozen: the caller keeps what it had


def test_a_fork_may_change_what_its_weights_allow():
    config = fork_changes(RunConfig(), {"proximal_mu": 1.0, "seq_len": 32, "lora.alpha": 32})
    assert (config.proximal_mu, config.seq_len, config.lora.alpha) == (1.0, 32, 32)


@pytest.mark.parametrize("key", ["model", "lora.enabled", "lora.r", "lora.target_modules"])
def test_a_fork_keeps_the_model_and_the_lora_shape(key):
    with pytest.raises(ConfigError, match=f"a fork starts from its parent's weights: {key}"):
        fork_changes(RunConfig(), {key: ["q_proj"] if key.endswith("modules") else True})


def test_changes_are_checked_across_keys_together():
    config, _ = with_changes(RunConfig(num_clients=4), {"clients_per_round": 2, "min_clients": 2})
    assert config.required_replies == 2
    with pytest.raises(ConfigError, match="min_clients"):
        with_changes(RunConfig(num_clients=4), {"clients_per_round": 2, "min_clients": 3})
