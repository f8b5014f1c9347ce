"""A client's warm worker: runs Flower's ClientApp entry in-process for every message.

Flower 1.42 starts a fresh `flwr-clientapp` process per message, which imports Flower's SuperNode
stack, torch and transformers, builds the model and loads the partition every round. The
deployment starts one worker per client beside its SuperNode, with the same environment; the
SuperNode's `flwr-clientapp` is fedtui's relay (engine.flower.relay), which hands its arguments
here. The worker calls Flower's own entry (`flwr_clientapp`, which pulls the message from the
SuperNode's Runtime API, loads the ClientApp from the FAB, runs it and pushes the reply) on its
main thread, so imports, the model and the samples cached by engine.app.client_app, and a
CUDA context, stay warm from round to round, in one process whose PID NVML sees every round.

Three names in Flower's runtime module are swapped while a message is handled, nothing else
(engine.flower.internals: CLIENTAPP_EXIT, PULL_TASK_INPUT, CLIENTAPP_INSTALL): `flwr_exit`, which
ends its process (and arms a thread that `os._exit`s it 5 s later), runs Flower's exit handlers
(they push the task's status) and returns the exit code instead; `pull_task_input` also tells the
relay which message was pulled, so that if this worker dies the relay can reply to it with an
error naming the client (`--report-death`); and `install_from_fab` first refuses a FAB that is not
fedtui's own app (engine.flower.own_app): the worker runs no other ClientApp.

    python -m engine.flower.worker --client N       # serve on $FEDTUI_WORKER_SOCKET
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any, NoReturn

from engine.flower import internals, own_app
from engine.flower.relay import WORKER_SOCKET_ENV, replies, send
from engine.system.guard import watch_controller

# Flower's SuperExec passes it; the worker watches its relay's connection instead.
PARENT_PID_FLAG = "--parent-pid"
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


class ClientAppFinished(Exception):
    """Flower's ClientApp entry asked to exit the process with `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def serve(socket_path: Path, client: int) -> None:
    """Listen first (a relay that comes early waits instead of going cold), then import
    Flower's entry and the ClientApp with its torch, then handle one message at a time."""
    socket_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(4)
    import engine.app.client_app  # noqa: F401  torch, transformers, flwr.clientapp: warm

    print(f"worker of client {client} (pid {os.getpid()}) ready on {socket_path}", flush=True)
    while True:
        connection, _ = listener.accept()
        with connection, connection.makefile("rwb") as stream:
            handle(stream, client)


def handle(stream: BufferedIOBase, client: int) -> None:
    """One relayed `flwr-clientapp` invocation: run it, answer with its exit code."""
    request = next(replies(stream), None)
    if request is None:
        return

    def announce(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a relay killed meanwhile: the reply still goes out
            send(stream, {"message": {**message, "client": client}})

    code = run_flower_entry(without_parent_pid(request["argv"]), announce)
    with contextlib.suppress(OSError):
        send(stream, {"exit_code": code})


def without_parent_pid(argv: list[str]) -> list[str]:
    """SuperExec's arguments minus `--parent-pid`: Flower's parent monitor is a thread that
    lives until SuperExec exits, one more per message in a long-lived process."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == PARENT_PID_FLAG:
            skip = True
        elif not arg.startswith(PARENT_PID_FLAG + "="):
            kept.append(arg)
    return kept


def run_flower_entry(argv: list[str], announce: Callable[[dict[str, Any]], None]) -> int:
    """Flower's `flwr-clientapp` entry point with `argv`, in this process; its exit code."""
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

    with _flower_runtime_in_process(announce), _arguments(argv), _signal_handlers_kept():
        try:
            flwr_clientapp()
        except ClientAppFinished as finished:
            return finished.code
    return 0


@contextlib.contextmanager
def _flower_runtime_in_process(announce: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    from flwr.app.message import remove_content_from_message
    from flwr.common.serde import message_to_proto
    from flwr.supercore.exit.exit_handler import trigger_exit_handlers

    pull_task_input = internals.PULL_TASK_INPUT.resolve()
    install_from_fab = internals.CLIENTAPP_INSTALL.resolve()

    def pull_and_announce(client: Any) -> Any:
        message, context, run, fab = pull_task_input(client)
        proto = message_to_proto(remove_content_from_message(message)).SerializeToString()
        announce(
            {
                "proto": base64.b64encode(proto).decode(),
                "message_id": message.metadata.message_id,
                "run_id": context.run_id,
                "node_id": context.node_id,
            }
        )
        return message, context, run, fab

    def exit_handlers_then_return(code: int, *args: Any, **kwargs: Any) -> NoReturn:
        trigger_exit_handlers(run_before_force_exit=True)
        trigger_exit_handlers(run_before_force_exit=False)
        raise ClientAppFinished(0 if 0 <= code < 100 else 1)  # flwr_exit's process exit code

    with internals.swapped(
        {
            internals.PULL_TASK_INPUT: pull_and_announce,
            internals.CLIENTAPP_EXIT: exit_handlers_then_return,
            internals.CLIENTAPP_INSTALL: own_app.only_fedtuis(install_from_fab),
        }
    ):
        yield


@contextlib.contextmanager
def _arguments(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = ["flwr-clientapp", *argv]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Flower's entry installs its own SIGINT/SIGTERM handlers (they end the process, as they
    should while a message is handled); between messages the worker's defaults apply again."""
    saved = {signum: signal.getsignal(signum) for signum in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def report_death(announced: dict[str, Any], argv: list[str]) -> int:
    """Reply to the message a dead worker had pulled with an error naming its client, and mark
    the task failed: the SuperNode forwards the reply at once instead of waiting 60 s for the
    task's heartbeat to expire."""
    from flwr.app import Context, Error, Message, RecordDict
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--root-certificates")
    args, _ = parser.parse_known_args(argv)
    certificates = Path(args.root_certificates).read_bytes() if args.root_certificates else None
    client = RuntimeHttpClient.from_server_address(
        server_address=args.runtime_api_address,
        insecure=args.insecure,
        root_certificates=certificates,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(args.token),
        ],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    message = message_from_proto(ProtoMessage.FromString(base64.b64decode(announced["proto"])))
    message.metadata.__dict__["_message_id"] = announced["message_id"]  # as Flower's pull does
    reason = f"the worker of client {announced['client']} died while handling the message"
    context = Context(
        run_id=announced["run_id"],
        node_id=announced["node_id"],
        node_config={},
        state=RecordDict(),
        run_config={},
    )
    push_message(
        client,
        Message(Error(code=ErrorCode.CLIENT_APP_CRASHED, reason=reason), reply_to=message),
        context,
    )
    push_task_output(client, context=None, sub_status=SubStatus.FAILED, details=reason)
    client.close()
    print(f"flwr-clientapp relay: {reason}; replied with an error", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--client", type=int, help="serve this client's messages")
    parser.add_argument("--report-death", metavar="JSON", help="(the relay's fault path)")
    args, flower_argv = parser.parse_known_args()
    watch_controller()
    if args.report_death:
        return report_death(json.loads(args.report_death), flower_argv)
    serve(Path(os.environ[WORKER_SOCKET_ENV]), args.client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
