"""The server strategies a run may use, by config name: the config keys each one reads, how it is
named in words, and which client counts it needs.

The strategies themselves are Flower's (`flwr.serverapp.strategy`, built in
engine.app.server.strategy), but for SCAFFOLD, which Flower has not (engine.app.server.scaffold);
this module holds what the config checks and every view need to know about them without
importing Flower. Their parameters keep Flower's names and defaults (a test checks the defaults
against the installed Flower's signatures).
"""

from __future__ import annotations

from typing import Any

# Each strategy's display name and the config keys it reads, in the order they are shown.
STRATEGY_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fedprox": ("FedProx", ("proximal_mu",)),
    "fedavg": ("FedAvg", ()),
    "fedavgm": ("FedAvgM", ("server_momentum", "server_learning_rate")),
    "fedadam": ("FedAdam", ("eta", "beta_1", "beta_2", "tau")),
    "fedyogi": ("FedYogi", ("eta", "beta_1", "beta_2", "tau")),
    "fedadagrad": ("FedAdagrad", ("eta", "tau")),
    "fedmedian": ("FedMedian", ()),
    "fedtrimmedavg": ("FedTrimmedAvg", ("beta",)),
    "krum": ("Krum", ("num_malicious_nodes",)),
    "multikrum": ("MultiKrum", ("num_malicious_nodes", "num_nodes_to_select")),
    "bulyan": ("Bulyan", ("num_malicious_nodes",)),
    "qfedavg": ("QFedAvg", ("q",)),
    "scaffold": ("SCAFFOLD", ("server_learning_rate",)),
}
STRATEGIES = tuple(STRATEGY_KEYS)
# Adaptive server optimizers (Reddi et al. 2020): their update needs only the replies' mean.
FEDOPT = ("fedadam", "fedyogi", "fedadagrad")
# Their aggregation needs every reply at once (order statistics, distances, per-reply losses).
WHOLE_ROUND = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan", "qfedavg")
# Flower's default server learning rate differs by strategy; `eta = 0` in the config means it.
FLOWER_ETA = {"fedadam": 0.1, "fedyogi": 0.01, "fedadagrad": 0.1}
_SHORT = {"proximal_mu": "mu", "server_momentum": "momentum", "server_learning_rate": "server lr"}


def server_eta(config: dict[str, Any]) -> float:
    """The FedOpt server learning rate a run uses: `eta`, or Flower's default for its strategy."""
    return config.get("eta") or FLOWER_ETA.get(config.get("strategy", ""), 0.0)


def strategy_parameters(config: dict[str, Any]) -> str:
    """ "eta=0.1 beta_1=0.9 ...": the parameters the run's strategy reads, from a config table
    (recorded runs hold tables; keys a run recorded before they existed are left out)."""
    _, keys = STRATEGY_KEYS.get(config.get("strategy", ""), ("", ()))
    values = {name: config[name] for name in keys if name in config}
    if "eta" in values:
        values["eta"] = server_eta(config)
    return " ".join(f"{_SHORT.get(name, name)}={value:g}" for name, value in values.items())


def describe_strategy(config: dict[str, Any]) -> str:
    """ "FedProx mu=0.1", "FedAdam eta=0.1 beta_1=0.9 beta_2=0.99 tau=0.001" and the like."""
    name = config.get("strategy", "?")
    title = STRATEGY_KEYS[name][0] if name in STRATEGY_KEYS else str(name)
    return f"{title} {strategy_parameters(config)}".rstrip()


def strategy_problem(config: Any) -> str | None:
    """Why a RunConfig's strategy cannot run with its parameters and client counts, or None.
    Counted over the replies a round needs (`min_clients`): a round may aggregate that few."""
    replies, f = config.required_replies, config.num_malicious_nodes
    for name in ("beta_1", "beta_2"):
        if getattr(config, name) >= 1.0:
            return f"config key {name!r} must be < 1, got {getattr(config, name)!r}"
    if config.beta >= 0.5:
        return (
            f"config key 'beta' (the share trimmed at each end) must be < 0.5, got {config.beta!r}"
        )
    if config.strategy == "scaffold" and config.aggregation == "flower":
        return (
            'strategy scaffold is fedtui\'s own (Flower has none), so aggregation = "flower" '
            'cannot run it: use aggregation = "streaming"'
        )
    needs = {"krum": 2 * f + 3, "multikrum": 2 * f + 3, "bulyan": 4 * f + 3}.get(config.strategy)
    if needs is not None and replies < needs:
        rule = "4 x" if config.strategy == "bulyan" else "2 x"
        return (
            f"strategy {config.strategy} with num_malicious_nodes={f} needs at least {needs} "
            f"replies a round ({rule} num_malicious_nodes + 3), but a round may count {replies}: "
            "raise num_clients / clients_per_round / min_clients or lower num_malicious_nodes"
        )
    if config.strategy == "multikrum" and config.num_nodes_to_select > replies:
        return (
            f"config key 'num_nodes_to_select' ({config.num_nodes_to_select}) must be at most the "
            f"replies a round may count ({replies})"
        )
    return None
