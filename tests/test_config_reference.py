"""Every config key is declared once (engine.core.config) and every listing of keys is rendered
from that declaration (engine.core.config_reference): `fedtui config`, the README's reference."""

import dataclasses
import re
import tomllib
from pathlib import Path

from engine.core import config_reference
from engine.core.config import TABLES, RunConfig
from engine.core.config_files import presets
from tui import cli

README = Path(__file__).parents[1] / "README.md"
REFERENCE = re.compile(
    r"<!-- fedtui config --markdown -->\n(.*?)<!-- end of fedtui config --markdown -->", re.S
)


def every_field(cls: type = RunConfig, prefix: str = "") -> list[str]:
    names = []
    for f in dataclasses.fields(cls):
        if f.type in TABLES:
            names += every_field(TABLES[f.type], f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


def test_the_readmes_reference_is_fedtui_config_markdown(capsys):
    assert cli.main(["config", "--markdown"]) == 0
    printed = capsys.readouterr().out

    (in_readme,) = REFERENCE.findall(README.read_text(encoding="utf-8"))
    assert in_readme == printed


def test_every_key_of_the_config_is_declared_and_listed():
    declared = [key.name for key in config_reference.declared_keys()]
    markdown = config_reference.render_markdown()

    assert sorted(declared) == sorted(every_field())
    for name in declared:
        assert f"| `{name}` |" in markdown


def test_a_listing_says_each_keys_default_values_and_whether_it_is_live(capsys):
    assert cli.main(["config"]) == 0
    text = capsys.readouterr().out

    assert 'strategy = "fedprox"\n    "fedprox" | "fedavg" | "fedavgm" | "fedadam" | ' in text
    assert "learning_rate = 0.001\n    float > 0; may change between rounds\n" in text
    assert "early_stopping.patience = 2\n    int >= 1; may change between rounds\n" in text
    assert "seq_len = 64\n    int >= 8\n" in text  # fixed for the run's life


def test_the_keys_a_researcher_tunes_mid_run_are_live_and_the_models_shape_is_not():
    live = set(config_reference.live_keys())

    assert {
        "learning_rate",
        "local_epochs",
        "proximal_mu",
        "clients_per_round",
        "min_clients",
        "server_learning_rate",
        "server_momentum",
        "round_timeout",
        "rounds",
        "client_eval",
        "early_stopping.enabled",
        "early_stopping.patience",
        "early_stopping.min_delta",
    } <= live
    assert not live & {"model", "dataset", "num_clients", "seq_len", "partition", "backend"}
    assert not {key for key in live if key.startswith("lora.")}


def test_the_default_preset_states_only_what_differs_from_the_defaults():
    stated = tomllib.loads(presets()["default"].read_text(encoding="utf-8"))
    defaults = RunConfig()

    assert stated  # it names the run
    for name, value in stated.items():
        assert value != getattr(defaults, name), f"default.toml restates {name} = {value!r}"
