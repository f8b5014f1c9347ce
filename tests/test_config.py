import pytest

from engine.core.config import EMBEDDED_DATASET, EMBEDDED_MODEL, RunConfig
from engine.core.config_checks import config_from_dict
from engine.core.config_files import (
    load_config,
    override_item,
    parse_override,
    presets,
    to_toml,
)
from engine.core.config_reference import declared_keys
from engine.core.errors import ConfigError


def test_defaults_run_offline_with_the_embedded_model_and_corpus():
    config = load_config()
    assert config.model == EMBEDDED_MODEL
    assert config.dataset == EMBEDDED_DATASET
    assert config.strategy == "fedprox"


def test_default_preset_matches_the_builtin_defaults():
    assert load_config("default") == RunConfig(name="default")


def test_seed_preset_is_the_reports_setup_field_by_field():
    config = load_config("opt350m-codeparrot-fedprox")
    assert (config.model, config.dataset) == (
        "facebook/opt-350m",
        "codeparrot/codeparrot-clean-valid",
    )
    assert (config.num_clients, config.samples_per_client) == (3, 1000)
    assert config.local_epochs == 3
    assert config.learning_rate == pytest.approx(1e-5)
    assert (config.train_batch_size, config.eval_batch_size) == (2, 4)
    assert config.rounds == 10
    assert (config.strategy, config.proximal_mu) == ("fedprox", pytest.approx(0.1))
    assert config.early_stopping.enabled


def test_overrides_apply_in_order_and_dotted_keys_reach_tables(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('rounds = 7\nstrategy = "fedavg"\n[early_stopping]\npatience = 3\n')
    config = load_config(
        path, ["rounds=9", "early_stopping.enabled=true", "name=my run", "learning_rate=2e-4"]
    )
    assert config.rounds == 9
    assert config.strategy == "fedavg"
    assert config.early_stopping.enabled and config.early_stopping.patience == 3
    assert config.name == "my run"
    assert config.learning_rate == pytest.approx(2e-4)


def test_integer_is_accepted_where_a_float_is_expected():
    assert load_config(None, ["proximal_mu=1"]).proximal_mu == 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["roundz=3"], "unknown config key 'roundz' (did you mean 'rounds'?)"),
        (["early_stopping.patiense=3"], "unknown config key 'early_stopping.patiense'"),
        (["rounds=0"], "'rounds' must be >= 1"),
        (["rounds=2.5"], "'rounds' must be int"),
        (["rounds=true"], "'rounds' must be int"),
        (["strategy=fedsgd"], "'strategy' must be one of fedprox, fedavg, fedavgm"),
        (["learning_rate=0"], "'learning_rate' must be > 0"),
        (["device=gpu"], "'device' must be auto, cpu, cuda or cuda:N"),
        (["early_stopping=3"], "'early_stopping' must be a table"),
        (["rounds"], "--set expects key=value"),
    ],
)
def test_bad_values_are_rejected_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_file_and_unknown_preset_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no config file or preset named 'nope'"):
        load_config("nope")


def test_invalid_toml_is_reported_with_the_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rounds = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(path)


def test_override_values_are_read_as_toml_else_as_strings():
    assert parse_override("rounds=3") == ("rounds", 3)
    assert parse_override("device=cuda:1") == ("device", "cuda:1")
    assert parse_override('model="facebook/opt-350m"') == ("model", "facebook/opt-350m")
    assert parse_override("model=facebook/opt-350m") == ("model", "facebook/opt-350m")


@pytest.mark.parametrize(
    "key,value",
    [
        *((key.name, key.default) for key in declared_keys()),
        ("name", "2026"),  # a string that --set would read as a number unquoted
        ("generation_prompts", ['def f(x):\n    return "x"\n']),
    ],
)
def test_a_value_offered_to_edit_reads_back_as_itself_through_set(key, value):
    assert parse_override(override_item(key, value)) == (key, value)


@pytest.mark.parametrize("name", sorted(presets()))
def test_resolved_config_round_trips_through_its_toml(name, tmp_path):
    config = load_config(name, ['name=quote " and \\ backslash'])
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config
    assert config_from_dict(config.to_dict()) == config


def test_early_stopping_on_pass_at_1_needs_code_eval():
    with pytest.raises(ConfigError, match="only code_eval measures"):
        config_from_dict({"early_stopping": {"metric": "pass@1"}})
    config = config_from_dict(
        {"early_stopping": {"metric": "pass@1"}, "code_eval": {"enabled": True}}
    )
    assert config.early_stopping.metric == "pass@1"
