"""A fork of a recorded run (engine.run.fork): which rounds can be forked, the config the fork
starts with, and what it may not change."""

import dataclasses

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.errors import ConfigError, FedtuiError
from engine.record import checkpoints
from engine.record.run_folders import family, in_families, list_runs
from engine.run.fork import fork_point, parse_origin
from tests.factories import write_run

CONFIG = dataclasses.replace(RunConfig(), name="seed", rounds=6)


def parent_run(folder, saved=(0, 1, 2, 3, 4), best=3):
    events = [dict(type_=ev.RUN_STARTED, run_id="parent-run", config=CONFIG.to_dict())]
    for number in range(5):
        if number == 2:  # local_epochs=3 applies from round 2 on
            events.append(dict(type_=ev.CONFIG_CHANGED, round=2, key="local_epochs", old=1, new=3))
        events.append(
            dict(type_=ev.ROUND_DONE, round=number, eval_loss=5.0, best_round=min(number, best))
        )
    events.append(dict(type_=ev.RUN_FINISHED, status="stopped", best_round=best))
    write_run(folder, events)
    for number in saved:
        checkpoints.save_round(folder / "checkpoints", number, lambda tmp: None, {})
    return folder


def test_a_fork_starts_from_the_rounds_model_with_the_config_that_round_ran_with(tmp_path):
    parent = parent_run(tmp_path / "p")

    config, origin = fork_point(f"{parent}@2", None, ["proximal_mu=1.0"])

    assert (origin.run, origin.round) == ("parent-run", 2)
    assert origin.checkpoint == parent.resolve() / "checkpoints" / "round-0002"
    assert config.local_epochs == 3  # as round 2 ran
    assert config.proximal_mu == 1.0
    assert config.rounds == 4  # what the parent had left: 6 - 2
    assert config.name == "seed-from-2"
    assert origin.recorded() == {"run": "parent-run", "path": str(parent.resolve()), "round": 2}


def test_without_a_round_a_fork_starts_from_the_best_one(tmp_path):
    config, origin = fork_point(str(parent_run(tmp_path / "p")), None, ["rounds=2"])
    assert origin.round == 3 and config.rounds == 2


def test_a_config_file_and_sets_lie_over_the_parents_config(tmp_path):
    (tmp_path / "more.toml").write_text("seed = 7\n[early_stopping]\nenabled = true\n")
    config, _ = fork_point(
        f"{parent_run(tmp_path / 'p')}@1", str(tmp_path / "more.toml"), ["seed=8"]
    )
    assert (config.seed, config.early_stopping.enabled, config.local_epochs) == (8, True, 1)


@pytest.mark.parametrize(
    ("spec", "saved", "message"),
    [
        ("{p}@4", (0, 2), "kept no global model of round 4; rounds it can be forked from: 0, 2"),
        ("{p}@1", (), "rounds it can be forked from: none"),
        ("{p}@two", (0,), "ROUND must be a round number"),
    ],
)
def test_a_round_that_cannot_be_forked_is_refused_naming_those_that_can(
    tmp_path, spec, saved, message
):
    parent = parent_run(tmp_path / "p", saved=saved)
    with pytest.raises(FedtuiError, match=message):
        fork_point(spec.format(p=parent), None, [])


def test_a_fork_cannot_change_the_model_or_its_lora_shape(tmp_path):
    with pytest.raises(ConfigError, match="a fork starts from its parent's weights: lora.r"):
        fork_point(f"{parent_run(tmp_path / 'p')}@2", None, ["lora.r=16"])


def test_a_run_folder_whose_name_holds_an_at_sign_is_still_found(tmp_path):
    folder = parent_run(tmp_path / "a@b")
    assert parse_origin(str(folder)) == (folder, None)
    assert parse_origin(f"{folder}@3") == (folder, 3)


def a_run(folder, run_id, parent=None):
    started = dict(type_=ev.RUN_STARTED, run_id=run_id, config=CONFIG.to_dict())
    if parent is not None:
        started["forked_from"] = {"run": parent.name, "path": str(parent), "round": 1}
    return write_run(folder / run_id, [started])


def test_forks_stand_under_their_parent_and_replay_with_it(tmp_path):
    parent = a_run(tmp_path, "1-parent")
    other = a_run(tmp_path, "2-other")
    fork = a_run(tmp_path, "3-fork", parent)
    fork_of_fork = a_run(tmp_path, "4-fork-of-fork", fork)
    orphan = a_run(tmp_path, "5-orphan", tmp_path / "gone")

    ordered = [(run.path.name, depth) for run, depth in in_families(list_runs(tmp_path))]

    assert ordered == [
        ("1-parent", 0),
        ("3-fork", 1),
        ("4-fork-of-fork", 2),
        ("2-other", 0),
        ("5-orphan", 0),
    ]
    assert family(parent) == [parent, fork, fork_of_fork]
    assert family(fork) == [fork, fork_of_fork]
    assert family(other) == [other] and family(orphan) == [orphan]
    assert family(tmp_path / "missing") == [tmp_path / "missing"]
