"""A round's messages out, its replies in: one at a time, as they arrive, and never waiting for
a client that is known to have crashed.

Pulling replies one by one lets each client's result show up the moment it arrives and be folded
into the new global model at once (engine.app.server.aggregation), so the server holds one reply at
a time, not all of them. A client whose processes die mid-round is dropped from the wait as soon as
the controller says so (engine.app.server.roster); the round then counts what the others sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from engine.app.flower_records import error_text, number
from engine.app.server.reply_checks import ReplyRules, claimed_partition, refusal
from engine.app.server.roster import Roster
from engine.core import events as ev

REPLY_POLL_S = 0.2
# How often to ask for the reply of a client known to be still training. Each ask is an HTTP
# request the SuperLink answers, a few milliseconds of CPU on each side taken from the training
# threads (BENCHMARKS.md, "Training speed"); asking at all is only the fallback for a word from
# the controller that gets lost.
TRAINING_POLL_S = 2.0
CLIENT_WAIT_POLL_S = 0.5
# A restarted SuperNode registers within seconds; past this a round goes on without it (if
# `min_clients` allows).
CLIENT_RECONNECT_WAIT_S = 60.0

Publish = Callable[..., None]


class RoundReplies:
    """One round's replies: `collect` yields the good ones; `failed` says who did not send one
    and why."""

    def __init__(
        self,
        grid: Grid,
        roster: Roster,
        *,
        publish: Publish,
        read_commands: Callable[[], None],
        timeout: float,
        rules: ReplyRules | None = None,
    ) -> None:
        """`rules`: what a reply must hold to be folded in (engine.app.server.reply_checks);
        None takes its weights as they are (a round whose replies are not folded in)."""
        self.grid = grid
        self.roster = roster
        self.rules = rules
        self.publish = publish
        self.read_commands = read_commands
        self.timeout = timeout
        self.replied: list[int] = []
        self.failed: dict[str, str] = {}

    def collect(self, server_round: int, messages: list[Message]) -> Iterator[Message]:
        """Push `messages` (and let them go), then yield each good reply as it arrives: asked
        for every REPLY_POLL_S, or every TRAINING_POLL_S while its client is known to train."""
        nodes = [message.metadata.dst_node_id for message in messages]
        node_of = {}
        for message_id, node in zip(self.grid.push_messages(messages), nodes):
            if message_id is None:
                self._fail(server_round, node, "its message could not be sent")
            else:
                node_of[message_id] = node
        messages.clear()
        deadline = time.monotonic() + self.timeout
        next_ask: dict[str, float] = {}  # while its client trains
        while node_of and (now := time.monotonic()) < deadline:
            for message_id, node in list(node_of.items()):
                if self.roster.training(node, server_round) and now < next_ask.get(message_id, now):
                    continue
                next_ask[message_id] = now + TRAINING_POLL_S
                for reply in self.grid.pull_messages([message_id]):
                    del node_of[message_id]
                    if self._accept(server_round, reply):
                        yield reply
            self.read_commands()
            yield from self._drop_crashed(server_round, node_of)
            if node_of:
                time.sleep(REPLY_POLL_S)
        for node in node_of.values():
            self._fail(
                server_round,
                node,
                f"no reply within round_timeout={self.timeout:g}s",
            )

    def _drop_crashed(self, server_round: int, node_of: dict[str, int]) -> list[Message]:
        """Stop waiting for clients the controller saw crash; a reply that made it before the
        crash, pulled one last time, still counts (returned)."""
        late: list[Message] = []
        for message_id, node in list(node_of.items()):
            reason = self.roster.lost(node, server_round)
            if reason is None:
                continue
            del node_of[message_id]
            replies = list(self.grid.pull_messages([message_id]))
            late.extend(reply for reply in replies if self._accept(server_round, reply))
            if not replies:
                self._fail(server_round, node, reason)
        return late

    def _accept(self, server_round: int, reply: Message) -> bool:
        node = reply.metadata.src_node_id
        if reply.has_error():
            self._fail(server_round, node, error_text(reply.error.reason))
            return False
        client = self._client_of(reply, node)
        if isinstance(client, str):
            self._fail(server_round, node, client)
            return False
        why = refusal(reply, client, self.rules) if self.rules is not None else None
        if why is not None:
            self._fail(server_round, node, why)
            return False
        self.roster.node_registered(node, client)
        metrics = reply.content.metric_records["metrics"]
        self.replied.append(client)
        self.publish(
            ev.CLIENT_ROUND_DONE,
            round=server_round,
            client=client,
            train_loss=metrics["train-loss"],
            examples=int(number(metrics, "num-examples")),
            steps=int(number(metrics, "steps")),
            seconds=metrics["train-seconds"],
            tokens=_optional_int(metrics.get("train-tokens")),
            peak_rss_bytes=_optional_int(metrics.get("peak-rss-bytes")),
            peak_vram_bytes=_optional_int(metrics.get("peak-vram-bytes")),
        )
        return True

    def _client_of(self, reply: Message, node: int) -> int | str:
        """The client a reply is from, or why it cannot be: the partition it names is not its
        node's, or is another live node's (a client cannot take another's place)."""
        claimed = claimed_partition(reply, self.roster.num_clients)
        if isinstance(claimed, str):
            return claimed
        known = self.roster.client(node)
        if known is not None and known != claimed:
            return f"its reply claims partition {claimed}, its node is client {known}'s"
        holder = self.roster.holder(claimed, self.grid.get_node_ids())
        if holder is not None and holder != node:
            return f"its reply claims partition {claimed}, which node {holder} holds"
        return claimed

    def _fail(self, server_round: int, node: int, reason: str) -> None:
        who = self.roster.name(node)
        self.failed[who] = reason
        self.publish(
            ev.ERROR,
            source="clientapp",
            round=server_round,
            client=self.roster.client(node),
            message=f"{who} failed in round {server_round}: {reason}",
        )

    def shortfall(self, server_round: int, required: int) -> str | None:
        """Why the round cannot count (fewer than `required` replies), else None."""
        if len(self.replied) >= required:
            return None
        failures = "; ".join(f"{who}: {why}" for who, why in sorted(self.failed.items()))
        return (
            f"round {server_round}: {len(self.replied)} client(s) replied, min_clients needs "
            f"{required}" + (f" ({failures})" if failures else "")
        )


def wait_for_clients(
    grid: Grid,
    roster: Roster,
    *,
    ceiling_s: float,
    read_commands: Callable[[], None],
    minimum: int | None = None,
) -> int:
    """Wait until `minimum` clients (default: every client expected) are connected, while that
    can still happen, for at most `ceiling_s`; the number of live nodes then."""
    deadline = time.monotonic() + ceiling_s
    while True:
        read_commands()
        live = len(roster.live(grid.get_node_ids()))
        target = roster.expected if minimum is None else minimum
        if live >= target or roster.expected < target or time.monotonic() >= deadline:
            return live
        time.sleep(CLIENT_WAIT_POLL_S)


def clients_for_round(
    grid: Grid,
    roster: Roster,
    *,
    required: int,
    round_timeout: float,
    read_commands: Callable[[], None],
) -> int:
    """Wait for a round's clients: every expected one for up to CLIENT_RECONNECT_WAIT_S, then,
    if fewer than `required` came, as long as a round may take for `required` of them; how many
    are connected."""
    live = wait_for_clients(
        grid, roster, ceiling_s=CLIENT_RECONNECT_WAIT_S, read_commands=read_commands
    )
    if live >= required:
        return live
    return wait_for_clients(
        grid, roster, ceiling_s=round_timeout, read_commands=read_commands, minimum=required
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
