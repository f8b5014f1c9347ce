"""A lost client costs its reply, not the run.

The controller owns every client's processes, so it sees a death the moment it happens, where
Flower would wait for a heartbeat to expire. `ClientSupervisor.check()`, called on every tick of
the controller's watch:

- tells the ServerApp which node each client's SuperNode registered as (from its log), so that
  the ServerApp can tell a dead node from a live one (engine.app.server.roster);
- when a SuperNode dies, records `client_crashed`, tells the ServerApp to stop waiting for that
  client's node, ends what is left of the client (its SuperExec, ClientApp and worker, which
  were talking to the dead SuperNode) and starts the client again: worker and SuperNode,
  `client_restarted`. The next round has the client back;
- when a worker dies, the same for the worker alone: its node lives on, so only the round the
  worker was in is lost.

A client is started again at most MAX_CLIENT_RESTARTS times a run. After that a client without a
SuperNode is gone for good (the ServerApp goes on while `min_clients` remain); one without a
worker goes on with Flower's own process per message (its relay finds no worker listening).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core import commands, events as ev
from engine.flower.deployment import FlowerDeployment
from engine.system.processes import ProcessTable, TrackedProcess

MAX_CLIENT_RESTARTS = 3


class ClientSupervisor:
    def __init__(
        self,
        deployment: FlowerDeployment,
        processes: ProcessTable,
        *,
        emit: Callable[[ev.Event], None],
        tell_server: Callable[[dict[str, Any]], None],
        current_round: Callable[[], int | None],
    ) -> None:
        self._deployment = deployment
        self._processes = processes
        self._emit = emit
        self._tell_server = tell_server
        self._current_round = current_round
        self._restarts: dict[int, int] = {}
        self._announced: dict[int, int] = {}  # client -> node told to the ServerApp

    def check(self) -> None:
        for client, supernode in list(self._deployment.supernodes.items()):
            self._announce_node(client)  # first: even a node that just died must be known
            if _exited(supernode):
                self._supernode_died(client, supernode)
                continue
            worker = self._deployment.workers.get(client)
            if worker is not None and _exited(worker):
                self._worker_died(client, worker)

    def _announce_node(self, client: int) -> None:
        node = self._deployment.registered_node(client)
        if node is not None and self._announced.get(client) != node:
            self._announced[client] = node
            self._tell_server(commands.make(commands.CLIENT_OF_NODE, node_id=node, client=client))

    def _supernode_died(self, client: int, supernode: TrackedProcess) -> None:
        restarting = self._crashed(client, supernode, node_dead=True)
        # The rest of the client was serving the dead SuperNode (a worker mid-message would
        # keep retrying it): end it all and start the client afresh.
        self._processes.scan()
        self._processes.kill([p for p in self._processes.alive() if p.client == client])
        if not restarting:
            del self._deployment.supernodes[client]
            self._deployment.workers.pop(client, None)
            return
        if self._deployment.config.warm_workers:
            self._deployment.start_worker(client)
        self._restarted(client, self._deployment.start_supernode(client))

    def _worker_died(self, client: int, worker: TrackedProcess) -> None:
        if self._crashed(client, worker, node_dead=False):
            self._restarted(client, self._deployment.start_worker(client))
            return
        del self._deployment.workers[client]
        self._emit(
            ev.make(
                ev.NOTICE,
                message=f"client {client} goes on with Flower's process per message "
                f"(see logs/worker-{client}.log)",
            )
        )

    def _crashed(self, client: int, process: TrackedProcess, *, node_dead: bool) -> bool:
        """Record and announce the crash; whether the client will be started again."""
        restarting = self._restarts.get(client, 0) < MAX_CLIENT_RESTARTS
        returncode = process.popen.returncode if process.popen is not None else None
        server_round = self._current_round()
        self._emit(
            ev.make(
                ev.CLIENT_CRASHED,
                client=client,
                role=process.role,
                pid=process.pid,
                returncode=returncode,
                round=server_round,
                restarting=restarting,
            )
        )
        self._tell_server(
            commands.make(
                commands.CLIENT_CRASHED,
                client=client,
                reason=f"its {process.role} (pid {process.pid}) exited with code {returncode}",
                node_dead=node_dead,
                coming_back=restarting or not node_dead,
                round=server_round,
            )
        )
        if node_dead:
            self._announced.pop(client, None)
        return restarting

    def _restarted(self, client: int, process: TrackedProcess) -> None:
        self._restarts[client] = self._restarts.get(client, 0) + 1
        self._emit(
            ev.make(
                ev.CLIENT_RESTARTED,
                client=client,
                role=process.role,
                pid=process.pid,
                attempt=self._restarts[client],
            )
        )


def _exited(process: TrackedProcess) -> bool:
    return process.popen is not None and process.popen.poll() is not None
