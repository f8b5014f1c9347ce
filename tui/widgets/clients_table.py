"""One row per client: state, local-step progress with rate, step loss, last round's loss (and
where it joined from, when clients are on other hosts).

With many clients the table scrolls, and sorts by client, state (the troubled first), last
round's loss or memory (`cycle_sort`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from engine.core.units import byte_size, loss
from engine.record.run_state import ClientState, RunState
from tui.messages import RunsChanged

BAR_WIDTH = 10
STATE_STYLES = {  # the states `engine.record.run_state` names
    "training": "bold green",
    "waiting": "dim",
    "idle": "dim italic",
    "failed": "bold red",
    "restarting": "bold yellow",
    "crashed": "bold white on red",
    "done": "cyan",
    "ended": "dim",
    "missing": "bold yellow",
    "joined": "cyan",
}
COLUMNS = (
    ("client", "client"),
    ("state", "state"),
    ("progress", "local steps"),
    ("rate", "it/s"),
    ("loss", "loss"),
    ("last", "last round"),
    ("memory", "memory"),
    ("peak_round", "peak rnd"),
    ("peak", "peak"),
    ("fraction", "% GPU"),
    ("trend", "trend"),
)
HOST_COLUMN = ("host", "joined from")
SORT_ORDERS = ("client", "state", "loss", "memory")
# Which states come first when sorting by state: those that need a look, then those at work.
STATE_RANK = (
    "crashed",
    "restarting",
    "failed",
    "missing",
    "training",
    "waiting",
    "joined",
    "done",
    "idle",
    "ended",
)
SPARK = "▁▂▃▄▅▆▇█"
TREND_WIDTH = 12


class ClientsTable(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sort_by = "client"
        self._state: RunState | None = None

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def on_runs_changed(self, message: RunsChanged) -> None:
        state: RunState = message.states[0]
        self._state = state
        virtual = state.config.get("backend") == "simulation"
        remote = any(client.address for client in state.clients.values())  # on other hosts
        if remote and HOST_COLUMN[0] not in self.columns:
            self.add_column(HOST_COLUMN[1], key=HOST_COLUMN[0], default="-")
        columns = [*COLUMNS, HOST_COLUMN] if remote else COLUMNS
        for number in sorted(state.clients):
            client = state.clients[number]
            cells = self.cells(client, virtual=virtual)
            if remote:
                cells.append(Text(client.address or "-"))
            key = str(number)
            if key not in self.rows:
                self.add_row(*cells, key=key)
                continue
            for (column, _), value in zip(columns, cells):
                self.update_cell(key, column, value, update_width=True)
        self._apply_sort()
        self._drop_stale_renders()

    def cycle_sort(self) -> str:
        """Sort by the next of SORT_ORDERS; its name."""
        self.sort_by = SORT_ORDERS[(SORT_ORDERS.index(self.sort_by) + 1) % len(SORT_ORDERS)]
        self._apply_sort()
        return self.sort_by

    def row_order(self) -> list[int]:
        """The clients, top to bottom, as the table shows them."""
        return [int(str(row.key.value)) for row in self.ordered_rows]

    def _apply_sort(self) -> None:
        if self._state is None:
            return
        rank = {number: i for i, number in enumerate(client_order(self._state, self.sort_by))}
        if self.row_order() != sorted(rank, key=rank.__getitem__):
            self.sort("client", key=lambda cell: rank.get(int(cell.plain), len(rank)))

    def _drop_stale_renders(self) -> None:
        # DataTable keys its render caches by a counter that each `update_cell` bumps, so after
        # an update no cached cell or line is ever hit again, yet each stays until 10,000 cells
        # and 1,000 lines are cached: ~15 MiB of dead Strips over a long run (benchmarks/soak).
        self._clear_caches()

    @staticmethod
    def cells(client: ClientState, *, virtual: bool = False) -> list:
        return [
            Text(str(client.client), justify="right"),
            Text(client.state, style=STATE_STYLES.get(client.state, "")),
            progress_bar(client.step, client.steps_total),
            Text(
                f"{client.steps_per_second:.1f}" if client.steps_per_second else "-",
                justify="right",
            ),
            Text(loss(client.loss), justify="right"),
            Text(loss(client.last_train_loss), justify="right"),
            *memory_cells(client, virtual=virtual),
        ]


def client_order(state: RunState, by: str) -> list[int]:
    """The run's clients sorted `by` one of SORT_ORDERS; ties, and clients without the figure
    (they go last), in client order."""
    clients = sorted(state.clients.values(), key=lambda c: c.client)
    if by == "state":
        ranks = {name: i for i, name in enumerate(STATE_RANK)}
        clients.sort(key=lambda c: ranks.get(c.state, len(ranks)))
    elif by == "loss":
        clients.sort(key=lambda c: (c.last_train_loss is None, c.last_train_loss or 0.0))
    elif by == "memory":  # the largest first
        clients.sort(key=lambda c: -(c.vram_bytes or c.rss_bytes or 0))
    return [c.client for c in clients]


def memory_cells(client: ClientState, *, virtual: bool = False) -> list[Text]:
    """VRAM now (and whether NVML or the ClientApp itself counted it), peaks this round and
    overall, share of the device, trend; host RSS where no GPU figure exists, and a virtual
    client of the simulation runtime, which has no process of its own, says so."""
    alarm = "bold white on red" if client.memory_warning else ""
    if client.vram_source is None:
        rss = f"RSS {byte_size(client.rss_bytes)}" if client.rss_bytes else "-"
        now = Text("virtual" if virtual else rss, style=alarm or "dim", justify="right")
        peaks = [Text("-", style="dim", justify="right"), Text("-", style="dim", justify="right")]
    else:
        source = "" if client.vram_source == "nvml" else " (torch)"
        now = Text(f"{byte_size(client.vram_bytes)}{source}", style=alarm, justify="right")
        peaks = [
            Text(byte_size(client.vram_peak_round), justify="right"),
            Text(byte_size(client.vram_peak), justify="right"),
        ]
    fraction = Text(
        "-" if client.device_fraction is None else f"{client.device_fraction:.0%}",
        style=alarm,
        justify="right",
    )
    return [now, *peaks, fraction, sparkline(client.memory_history[-TREND_WIDTH:])]


def sparkline(values: list[int]) -> Text:
    if not values:
        return Text("")
    low, high = min(values), max(values)
    span = (high - low) or 1
    return Text(
        "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values), style="cyan"
    )


def progress_bar(step: int, total: int) -> Text:
    if not total:
        return Text("·" * BAR_WIDTH + "      -", style="dim")
    filled = round(BAR_WIDTH * min(step, total) / total)
    bar = Text("━" * filled, style="green")
    bar.append("━" * (BAR_WIDTH - filled), style="grey30")
    bar.append(f" {step:>4}/{total}")
    return bar
