"""The figures of one GPU check case, read from its run's events and nvidia-smi's samples.

Per client: training tokens/s; peak VRAM three ways: as fedtui recorded it (NVML, per process,
attributed to clients by PID), what nvidia-smi said for those PIDs at the sample nearest that
peak, and torch's `max_memory_reserved` inside the ClientApp; whether every PID fedtui
attributed is one nvidia-smi listed. Per run: round time, bytes per round. From those, the wall
time of the seed report's whole experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core import events as ev

GIB = 2**30
# The seed report: 10 rounds x 3 clients x 1000 samples x 3 local epochs, 26,969 s of server
# runtime; eval loss best at round 3, so early stopping with patience 2 ends after round 5.
SEED_ROUNDS, SEED_SAMPLES, SEED_EPOCHS, SEED_SECONDS = 10, 1000, 3, 26_969
SEED_EARLY_STOP_ROUNDS = 5
SMI_NEAREST_S = 1.5  # an nvidia-smi sample further than this from fedtui's is no match


@dataclass
class SmiSample:
    t: float
    used_bytes: dict[int, int]  # pid -> bytes, as `nvidia-smi --query-compute-apps` lists them


@dataclass
class ClientFigures:
    client: int
    train_seconds: float
    tokens_per_s: float | None
    examples: int
    nvml_peak_bytes: int | None
    smi_at_peak_bytes: int | None
    torch_reserved_bytes: int | None
    pids: list[int] = field(default_factory=list)
    pids_seen_by_smi: bool | None = None


@dataclass
class CaseFigures:
    name: str
    status: str
    round_seconds: float | None
    eval_seconds: float | None
    startup_seconds: float | None  # run start to round 1's start (processes, data, round 0 eval)
    bytes_per_round: int | None
    clients: list[ClientFigures]
    smi_peak_total_bytes: int | None
    reason: str = ""

    def overhead_seconds(self) -> float | None:
        if self.round_seconds is None or self.eval_seconds is None or not self.clients:
            return None
        return self.round_seconds - max(c.train_seconds for c in self.clients) - self.eval_seconds


def figures(name: str, events: list[ev.Event], smi: list[SmiSample]) -> CaseFigures:
    finished = next((e for e in events if e["type"] == ev.RUN_FINISHED), {})
    status = finished.get("status", "unfinished")
    done = next((e for e in events if e["type"] == ev.ROUND_DONE and e["round"] == 1), None)
    started = next((e for e in events if e["type"] == ev.ROUND_STARTED and e["round"] == 1), None)
    run_start = next((e["t"] for e in events if e["type"] == ev.RUN_STARTED), None)
    samples = [e for e in events if e["type"] == ev.GPU_SAMPLE]
    clients = [
        _client(e, samples, smi)
        for e in events
        if e["type"] == ev.CLIENT_ROUND_DONE and e["round"] == 1
    ]
    errors = [e["message"] for e in events if e["type"] == ev.ERROR]
    return CaseFigures(
        name=name,
        status=status,
        round_seconds=done["seconds"] if done else None,
        eval_seconds=done.get("eval_seconds") if done else None,
        startup_seconds=started["t"] - run_start if started and run_start else None,
        bytes_per_round=(done["bytes_sent"] + done["bytes_received"]) if done else None,
        clients=sorted(clients, key=lambda c: c.client),
        smi_peak_total_bytes=max((sum(s.used_bytes.values()) for s in smi), default=None),
        reason=finished.get("reason") or "; ".join(errors),
    )


def _client(done: ev.Event, samples: list[ev.Event], smi: list[SmiSample]) -> ClientFigures:
    key = str(done["client"])
    mine = [s for s in samples if (s["clients"].get(key) or {}).get("source") == "nvml"]
    pids = sorted({pid for s in mine for pid in s["clients"][key].get("gpu_pids", [])})
    peak = max(mine, key=lambda s: s["clients"][key]["vram_bytes"], default=None)
    smi_at_peak = None
    if peak is not None:
        nearest = min(smi, key=lambda s: abs(s.t - peak["t"]), default=None)
        if nearest is not None and abs(nearest.t - peak["t"]) <= SMI_NEAREST_S:
            peak_pids = peak["clients"][key].get("gpu_pids", [])
            smi_at_peak = sum(nearest.used_bytes.get(pid, 0) for pid in peak_pids)
    listed = {pid for s in smi for pid in s.used_bytes}
    tokens = done.get("tokens")
    return ClientFigures(
        client=done["client"],
        train_seconds=done["seconds"],
        tokens_per_s=tokens / done["seconds"] if tokens and done["seconds"] else None,
        examples=done["examples"],
        nvml_peak_bytes=peak["clients"][key]["vram_bytes"] if peak else None,
        smi_at_peak_bytes=smi_at_peak,
        torch_reserved_bytes=done.get("peak_vram_bytes"),
        pids=pids,
        pids_seen_by_smi=set(pids) <= listed if pids and smi else None,
    )


def seed_estimate(case: CaseFigures, samples_per_client: int) -> dict[str, float]:
    """The seed's whole experiment in fedtui, from this case's one round of `samples_per_client`
    x 1 epoch: training scaled to 1000 samples x 3 epochs; the central evaluation (the preset's
    eval_samples), the round's fixed overhead and the start-up (round 0's evaluation included)
    as measured."""
    overhead = case.overhead_seconds()
    if overhead is None or case.eval_seconds is None or case.startup_seconds is None:
        return {}
    slowest = max(c.train_seconds for c in case.clients)
    train = slowest * SEED_SAMPLES * SEED_EPOCHS / samples_per_client
    per_round = train + case.eval_seconds + overhead
    whole = case.startup_seconds + SEED_ROUNDS * per_round
    early = case.startup_seconds + SEED_EARLY_STOP_ROUNDS * per_round
    return {"per_round_s": per_round, "whole_s": whole, "early_stop_s": early}


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[value]


def markdown(cases: list[CaseFigures], samples_per_client: int) -> str:
    lines = [
        "| case | client | round s | train s | tokens/s | peak VRAM GiB: fedtui (NVML) "
        "| nvidia-smi then | torch reserved | PIDs listed by nvidia-smi | MB per round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        if not case.clients:
            lines.append(f"| {case.name} | {case.status}: {case.reason} |" + " |" * 8)
            continue
        for c in case.clients:
            lines.append(
                f"| {case.name} | {c.client} | {case.round_seconds:.1f} | {c.train_seconds:.1f} "
                f"| {_rate(c.tokens_per_s)} | {_gib(c.nvml_peak_bytes)} "
                f"| {_gib(c.smi_at_peak_bytes)} | {_gib(c.torch_reserved_bytes)} "
                f"| {_yes_no(c.pids_seen_by_smi)} "
                f"| {(case.bytes_per_round or 0) / 1e6:,.1f} |"
            )
    lines += ["", "| estimate of the seed's experiment | hours |", "|---|---|"]
    lines.append(f"| the seed report (its own setup) | {SEED_SECONDS / 3600:.2f} |")
    for case in cases:
        estimate = seed_estimate(case, samples_per_client)
        if estimate:
            lines.append(
                f"| fedtui, {case.name}: {SEED_ROUNDS} rounds | {estimate['whole_s'] / 3600:.2f} |"
            )
            lines.append(
                f"| fedtui, {case.name}: early stopping after round {SEED_EARLY_STOP_ROUNDS} "
                f"| {estimate['early_stop_s'] / 3600:.2f} |"
            )
    return "\n".join(lines)
