"""Run name, strategy, round r/N, elapsed, ETA and status at the top of the monitor."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from engine.core.describe import partition_spread, setting
from engine.core.strategies import describe_strategy
from engine.core.units import byte_size, duration, parameter_count
from engine.record.client_state import DOWN
from engine.record.run_state import RunState
from tui import format as fmt
from tui.format import many_clients
from tui.messages import RunsChanged
from tui.widgets.clients_table import STATE_STYLES


class RunHeader(Static):
    """`clock` gives the wall time for a live run's elapsed time; without one (replays,
    scripted runs) elapsed time comes from the events themselves."""

    def __init__(self, clock: Callable[[], float] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self._states: list[RunState] = []
        self._names: list[str] = []

    def on_mount(self) -> None:
        if self._clock is not None:
            self.set_interval(1.0, self._redraw)

    def on_runs_changed(self, message: RunsChanged) -> None:
        self._states, self._names = message.states, message.names
        self._redraw()

    def _redraw(self) -> None:
        if self._states:
            self.update(self.render_header(self._states[0], self._names[0], len(self._states)))

    def render_header(self, state: RunState, name: str, runs: int) -> Text:
        config = state.config
        total = state.total_rounds or 0
        elapsed = self._elapsed(state)
        line = Text()
        line.append(
            f" {state.status.upper()} ",
            style=f"reverse {fmt.STATUS_STYLES.get(state.status, 'bold')}",
        )
        line.append(f"  {name}", style="bold")
        line.append(f"  {describe_strategy(config)}" if config else "")
        line.append(f"  round {state.current_round}/{total}")
        line.append(trained_text(state))
        line.append(f"  elapsed {duration(elapsed)}")
        eta = self._eta(state, total)
        if eta is not None:
            line.append(f"  ETA {duration(eta)}")
        if state.best_round is not None:
            line.append(
                f"  best eval {state.best_eval_loss:.4f} @ round {state.best_round}", style="green"
            )
        line.append(pass_at_text(state), style="green")
        if state.errors:
            line.append(f"  {len(state.errors)} error(s)/warning(s): see events", style="bold red")
        detail = Text()
        if config:
            detail.append(
                f" {config.get('model', '?')} on {config.get('dataset', '?')}, "
                f"{config.get('num_clients', '?')} {clients_kind(config)} x "
                f"{config.get('samples_per_client', '?')} samples, "
                f"{local_work_text(config)}, {learning_rate_text(state)}",
                style="dim",
            )
        if state.imported_from:
            detail.append(
                f"  imported from {state.imported_from}: no per-client detail",
                style="italic magenta",
            )
        if state.partition and state.partition["partition"] != "iid":
            detail.append(
                f"  {state.partition['partition']}: {partition_spread(state.partition['clients'])}",
                style="dim",
            )
        detail.append(early_stopping_text(state))
        if runs > 1:
            detail.append(f"  +{runs - 1} run(s) overlaid", style="bold magenta")
        if state.early_stop_reason:
            detail.append(f"  early stop: {state.early_stop_reason}", style="yellow")
        elif state.notice and not state.finished and not state.rounds:
            detail.append(f"  {state.notice}", style="italic")
        lines = [line, steering_text(state), client_faults_text(state), detail, model_text(state)]
        return Text("\n").join(text for text in lines if text)

    def _elapsed(self, state: RunState) -> float | None:
        if self._clock is not None and state.started_at is not None and not state.finished:
            return self._clock() - state.started_at
        return state.elapsed

    @staticmethod
    def _eta(state: RunState, total: int) -> float | None:
        if state.finished:
            return None
        durations = [r.seconds for n, r in state.rounds.items() if n > 0 and r.seconds]
        if not durations:
            return None
        return statistics.fmean(durations) * max(total - state.rounds_completed, 0)


def clients_kind(config: dict) -> str:
    """ "clients", or what they are when not one SuperNode process each."""
    if config.get("backend") == "simulation":
        return "virtual clients (Flower simulation, Ray)"
    return "clients"


def trained_text(state: RunState) -> Text:
    """How many of the clients sent this round's model have trained it so far."""
    current = state.rounds.get(state.current_round)
    if not many_clients(state) or current is None or not current.clients_sent:
        return Text()
    return Text(f"  {len(current.client_train_loss)}/{current.clients_sent} clients trained")


def early_stopping_text(state: RunState) -> Text:
    """ "early stop: on, patience 2, 1 round without improvement"."""
    policy = state.early_stopping
    if not policy:
        return Text()
    if not policy.get("enabled"):
        return Text("  early stop: off", style="dim")
    waited = state.rounds_without_improvement
    return Text(
        f"  early stop: on, patience {policy.get('patience')}, {waited} round"
        f"{'' if waited == 1 else 's'} without improvement",
        style="yellow" if waited else "",
    )


def steering_text(state: RunState) -> Text:
    """Where the run was steered: "held after round 2", "changed from round 3: local_epochs
    1→2", "forked from <run> after its round 2"."""
    parts = []
    if state.held_after is not None:
        parts.append(
            Text(
                f"held after round {state.held_after}: nothing trains until it continues",
                style="bold yellow",
            )
        )
    latest = state.latest_change
    if latest is not None:
        changes = [c for c in state.config_history.changes if c.round == latest.round]
        said = ", ".join(f"{c.key} {setting(c.old)}→{setting(c.new)}" for c in changes)
        parts.append(Text(f"changed from round {latest.round}: {said}", style="cyan"))
    if state.forked_from:
        parent = state.forked_from
        parts.append(
            Text(f"forked from {parent['run']} after its round {parent['round']}", style="magenta")
        )
    return Text("  ").join([Text(""), *parts]) if parts else Text()


def client_faults_text(state: RunState) -> Text:
    """ "client 1 restarting: worker exited with code -9 in round 3" for each client that is
    down; once all are back, "2 client crashes, restarted (last: client 1's worker ...)"."""
    crashed = [client for _, client in sorted(state.clients.items()) if client.crashes]
    down = [client for client in crashed if client.state in DOWN]
    if not crashed:
        return Text()
    if not down:
        total = sum(client.crashes for client in crashed)
        last = next((c for c in crashed if c.client == state.last_crashed_client), crashed[-1])
        return Text(
            f" {total} client crash{'' if total == 1 else 'es'}, restarted "
            f"(last: client {last.client}'s {last.last_crash})",
            style="yellow",
        )
    return Text(" ").join(
        [Text("")]
        + [
            Text(
                f"client {client.client} {client.state}: {client.last_crash}",
                style=STATE_STYLES[client.state],
            )
            for client in down
        ]
    )


def model_text(state: RunState) -> Text:
    """ "135.0M params, 0.5M trained (LoRA r=8) · bf16 · 1.0 MiB/client/round"."""
    model = state.model
    if not model:
        return Text()
    trained = (
        "all trained"
        if model["trainable_params"] == model["total_params"]
        else f"{parameter_count(model['trainable_params'])} trained"
    )
    text = f" {parameter_count(model['total_params'])} params, {trained}"
    if model.get("lora_r") is not None:
        text += f" (LoRA r={model['lora_r']})"
    text += f" · {model['precision']}"
    if model.get("transfer_dtype") not in (None, "fp32"):
        text += f" · sent as {model['transfer_dtype']}"
    latest = next(
        (
            r
            for n, r in sorted(state.rounds.items(), reverse=True)
            if n > 0 and r.bytes_received and r.client_train_loss
        ),
        None,
    )
    if latest is not None and latest.bytes_received:
        per_client = latest.bytes_received / len(latest.client_train_loss)
        text += f" · {byte_size(per_client)}/client/round"
    return Text(text, style="dim")


def pass_at_text(state: RunState) -> str:
    """ "  pass@1 0.125 (best 0.250 @ round 3)": code_eval's latest score and its best."""
    scored = [
        (number, r.pass_at[1]) for number, r in sorted(state.rounds.items()) if 1 in r.pass_at
    ]
    if not scored:
        return ""
    best_round, best = max(scored, key=lambda item: item[1])
    return f"  pass@1 {scored[-1][1]:.3f} (best {best:.3f} @ round {best_round})"


def local_work_text(config: dict) -> str:
    steps = config.get("local_steps") or 0
    return f"{steps} local steps" if steps else f"{config.get('local_epochs', '?')} local epoch(s)"


def learning_rate_text(state: RunState) -> str:
    """The learning rate the current round trains with; under a cosine schedule, where it goes."""
    config = state.config
    result = state.rounds.get(state.current_round)
    rate = result.learning_rate if result and result.learning_rate is not None else None
    text = f"lr {config.get('learning_rate', 0) if rate is None else rate:.3g}"
    if config.get("lr_schedule") == "cosine":
        text += f" (cosine to {config.get('min_learning_rate', 0):g})"
    return text
