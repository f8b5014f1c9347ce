"""Every name inside Flower that fedtui relies on beyond Flower's public API (and inside uvicorn,
which serves Flower's HTTP APIs): what it is, where fedtui uses it and why. The one page to read
before upgrading Flower (pinned to 1.42).

Flower 1.42 has no hook for what these do: keep a ClientApp process warm across messages, poll
for work more often than every 3 s, refuse the SuperLink's and SuperNodes' APIs to other users
and hosts, run no ClientApp but fedtui's, learn which node a SuperNode registered as, wake less
often while clients train. Each is a `Premise` about the installed Flower; `broken_premises()`
lists those that no longer hold, and tests/test_flower_premises.py asserts the list is empty, so
an upgrade that breaks one fails in that test, naming it. fedtui replaces a name of Flower's only
through `swap` and `swapped`, which take the premise, never a string.

Nothing of Flower's is imported until a premise is resolved: the relay and the controller import
this module cheaply.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any


@dataclass(frozen=True)
class Premise:
    """`name` (a dotted path: module, then attributes) exists in the installed Flower and is
    what `what` says; `expect(found)` returns what is wrong with it, or None."""

    name: str
    what: str
    used_by: str
    why: str
    expect: Callable[[Any], str | None] = field(default=lambda found: None)

    def resolve(self) -> Any:
        """The object `name` names; LookupError saying what is missing."""
        return _resolve(self.name)

    def problem(self) -> str | None:
        try:
            return self.expect(self.resolve())
        except LookupError as err:
            return str(err)


def _resolve(name: str) -> Any:
    """The object a dotted path (module, then attributes) names; LookupError if none."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                raise LookupError(f"{'.'.join(parts[:cut])} has no {attribute!r}")
            found = getattr(found, attribute)
        return found
    raise LookupError(f"no module {parts[0]!r}")


class TimeWithOwnSleep:
    """The `time` module, for a loop of Flower's to see in its module's place (a `*_TIME`
    premise), but for `sleep`, which a subclass defines."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        raise NotImplementedError


def _parameters(*names: str) -> Callable[[Any], str | None]:
    """The callable takes exactly these parameters, in this order."""

    def expect(found: Any) -> str | None:
        actual = tuple(inspect.signature(found).parameters)
        return None if actual == names else f"takes {actual}, fedtui assumes {names}"

    return expect


def _source_has(*fragments: str) -> Callable[[Any], str | None]:
    """The object's source code still holds each fragment (a call, a log line)."""

    def expect(found: Any) -> str | None:
        source = inspect.getsource(found)
        missing = [fragment for fragment in fragments if fragment not in source]
        return f"its source no longer holds {missing}" if missing else None

    return expect


def _all_of(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def expect(found: Any) -> str | None:
        return next((problem for check in checks if (problem := check(found))), None)

    return expect


_RUNTIME = "flwr.supernode.runtime.run_clientapp"
_PUSH = "push_message, push_task_output"

PULL_TASK_INPUT = Premise(
    f"{_RUNTIME}.pull_task_input",
    "pulls a task's message, context, run and FAB from the SuperNode's Runtime API",
    "engine.flower.worker",
    "swapped while the warm worker handles a message, to also tell the relay which message it "
    "pulled: a worker that dies mid-message is then answered for, naming its client",
    _parameters("client"),
)
CLIENTAPP_EXIT = Premise(
    f"{_RUNTIME}.flwr_exit",
    "the exit the ClientApp runtime calls when a message is done: it ends the process",
    "engine.flower.worker",
    "swapped while the warm worker handles a message: the exit handlers run (they push the "
    "task's status) and the exit code is returned, so the worker lives on to the next message",
    _parameters("code", "message", "event_type", "event_details", "emit_telemetry"),
)
RUNTIME_PUSH = Premise(
    f"{_RUNTIME}.push_task_output",
    f"with {_RUNTIME}.push_message: a task's reply and its final status, to the SuperNode",
    "engine.flower.worker (report_death)",
    "the relay of a dead worker replies with an error and marks the task failed, so the "
    "ServerApp hears at once instead of after a 60 s heartbeat",
    _parameters("client", "context", "sub_status", "details"),
)
PUSH_MESSAGE = Premise(
    f"{_RUNTIME}.push_message",
    "pushes a reply message to the SuperNode (sets its message id first)",
    "engine.flower.worker (report_death)",
    RUNTIME_PUSH.why,
    _parameters("client", "message", "context"),
)
EXIT_HANDLERS = Premise(
    "flwr.supercore.exit.exit_handler.trigger_exit_handlers",
    "runs one phase of the exit handlers Flower registered (a task pushes its status in one)",
    "engine.flower.worker",
    "what the swapped flwr_exit still does before it returns",
    _parameters("run_before_force_exit"),
)
MESSAGE_ID = Premise(
    "flwr.app.metadata.Metadata.__init__",
    "a message's metadata keeps its id in the private attribute `_message_id`",
    "engine.flower.worker (report_death)",
    "a message rebuilt from its proto gets its id back as Flower's own pull does",
    _source_has('"_message_id"'),
)
APP_COMMON_ARGS = Premise(
    "flwr.common.args.add_args_flwr_app_common",
    "the arguments SuperExec passes every app process, `--parent-pid` among them",
    "engine.flower.worker (without_parent_pid)",
    "a warm worker drops `--parent-pid`: each message would start one more parent-watching "
    "thread, living until that message's SuperExec exits",
    _source_has('"--parent-pid"'),
)
SUPERNODE_TIME = Premise(
    "flwr.supernode.start_client_internal.time",
    "the `time` module as the SuperNode's polling loop sees it; the loop sleeps 3 s when the "
    "SuperLink has no message for it",
    "engine.flower.supernode",
    "swapped for one whose sleeps last at most 0.25 s: a client's next message waited 1.5 s on "
    "average after every round (BENCHMARKS.md)",
    lambda found: None if found is time else "is no longer the time module",
)
SUPERNODE_LOOP = Premise(
    "flwr.supernode.start_client_internal.start_client_internal",
    "the SuperNode's main loop: it sleeps `time.sleep(3)` when idle, and logs "
    "'SuperNode ID: <id>' once registered",
    "engine.flower.supernode (the sleep); engine.flower.home.NODE_ID_LINE (the log line)",
    "the sleep is what SUPERNODE_TIME shortens; the log line is how the controller learns "
    "which node each client's SuperNode registered as (the ServerApp sees nodes, not clients)",
    _source_has("time.sleep(3)", '"SuperNode ID: %s"'),
)
SUPEREXEC_TIME = Premise(
    "flwr.supercore.superexec.run_superexec.time",
    "the `time` module as SuperExec's task loop sees it: the loop asks for a task, then sleeps "
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL (1 s)",
    "engine.flower.superexec",
    "swapped for one whose sleep lasts, while a task process the SuperExec started is running, "
    "until one ends: each ask took CPU from training clients",
    lambda found: None if found is time else "is no longer the time module",
)
SUPEREXEC_LOOP = Premise(
    "flwr.supercore.superexec.run_superexec.run_superexec",
    "SuperExec's main loop: it asks for a task (AcquireTask) and sleeps, every time",
    "engine.flower.superexec",
    "the sleep is what SUPEREXEC_TIME lengthens while a task runs",
    _source_has("client.AcquireTask(", "time.sleep(task_poll_interval)"),
)
SUBPROCESS_LAUNCH = Premise(
    "flwr.supercore.superexec.executor.subprocess_executor.SubprocessExecutor.launch",
    "SuperExec's executor starts each task as a child process of the SuperExec",
    "engine.flower.superexec",
    "a running child is how the swapped sleep knows a task runs",
    _source_has("subprocess.Popen("),
)
SUPERLINK_APP = Premise(
    "flwr.superlink.main.create_app",
    "builds the SuperLink's FastAPI app: the Fleet, Control and Runtime APIs on one port",
    "engine.flower.superlink",
    "swapped for one that adds fedtui's middleware: other users and hosts reach only the Fleet "
    "API (the Control API runs any app it is sent, and checks no one in this distribution)",
    _parameters("config", "superlink_lifespan_class"),
)
SUPERLINK_ENTRY = Premise(
    "flwr.superlink.cli.flower_superlink._run_superlink_http_api",
    "starts the SuperLink's HTTP service, looking `create_app` up in flwr.superlink.main when "
    "it runs",
    "engine.flower.superlink",
    "a swap of SUPERLINK_APP takes effect only because the name is looked up at call time",
    _all_of(_parameters("lifespan_config"), _source_has("from flwr.superlink.main import")),
)
SUPERNODE_APP = Premise(
    "flwr.supernode.main.create_app",
    "builds the SuperNode's FastAPI app: its Runtime API, which the ClientApp pulls a task "
    "(the model) from and pushes its reply to",
    "engine.flower.supernode",
    "swapped for one that adds fedtui's middleware: only this user's processes reach it",
    _parameters("state_factory", "superexec_auth_secret"),
)
SUPERNODE_ENTRY = Premise(
    "flwr.supernode.cli.flower_supernode._start_supernode_http_api",
    "starts the SuperNode's HTTP service, looking `create_app` up in flwr.supernode.main when "
    "it runs",
    "engine.flower.supernode",
    "a swap of SUPERNODE_APP takes effect only because the name is looked up at call time",
    _all_of(_parameters("config", "state_factory"), _source_has("from flwr.supernode.main import")),
)
CLIENTAPP_INSTALL = Premise(
    f"{_RUNTIME}.install_from_fab",
    "installs a task's FAB (unpacks it under FLWR_HOME) before the ClientApp it names is "
    "loaded from it, the FAB's folder put first on sys.path",
    "engine.flower.worker (engine.flower.own_app)",
    "swapped while the warm worker handles a message: a FAB that is not fedtui's own (another "
    "ClientApp, or modules of its own) is refused before anything of it is unpacked or run",
    _parameters("fab_file", "install_dir", "skip_prompt"),
)
CLIENTAPP_RUN = Premise(
    f"{_RUNTIME}.run_clientapp",
    "the ClientApp process: pulls the task, installs its FAB, loads the ClientApp, runs it; an "
    "exception on the way is answered with an error reply",
    "engine.flower.worker",
    "CLIENTAPP_INSTALL guards the only way from a task's FAB to code this process runs",
    _source_has("install_from_fab(fab.content", "load_client_app_fn(", "except Exception"),
)
GUARDED_PROGRAMS = ("flower-superexec", "flwr-serverapp", "flwr-clientapp", "flwr-simulation")
CONSOLE_SCRIPTS = Premise(
    "flwr",
    f"Flower's programs {', '.join(GUARDED_PROGRAMS)} are console scripts of the distribution",
    "engine.system.guard (run_guarded), engine.flower.home",
    "each runs under fedtui's guard (it ends with the controller) by loading its entry point",
    lambda found: (
        f"no console script {missing}"
        if (
            missing := [
                p for p in GUARDED_PROGRAMS if not entry_points(group="console_scripts", name=p)
            ]
        )
        else None
    ),
)
GRID_METHODS = (
    "create_message",
    "get_node_ids",
    "pull_messages",
    "push_messages",
    "run",
    "send_and_receive",
    "set_run",
)
GRID = Premise(
    "flwr.serverapp.Grid",
    "the ServerApp's view of the nodes; its abstract methods, and `set_run` taking a "
    "flwr.supercore.run.Run",
    "engine.app.server.roster (LiveGrid)",
    "LiveGrid wraps the run's Grid to hide dead and unsampled nodes from the strategy, so it "
    "must implement every abstract method Grid has",
    lambda found: (
        None
        if sorted(found.__abstractmethods__) == list(GRID_METHODS)
        else f"abstract methods {sorted(found.__abstractmethods__)}, LiveGrid has {GRID_METHODS}"
    ),
)
RUN = Premise(
    "flwr.supercore.run.Run",
    "a run as the Grid holds it",
    "engine.app.server.roster (LiveGrid.set_run)",
    GRID.why,
)
WORKER_IMPORTS = tuple(
    Premise(
        name,
        "part of the runtime the ClientApp process talks to its SuperNode with",
        "engine.flower.worker",
        "the warm worker runs Flower's flwr-clientapp entry in-process and, when one dies, its "
        "relay replies for it through the same runtime client",
    )
    for name in (
        "flwr.supernode.cli.flwr_clientapp.flwr_clientapp",
        "flwr.app.message.remove_content_from_message",
        "flwr.common.serde.message_to_proto",
        "flwr.common.serde.message_from_proto",
        "flwr.proto.message_pb2.Message",
        "flwr.common.constant.ErrorCode.CLIENT_APP_CRASHED",
        "flwr.common.constant.SubStatus.FAILED",
        "flwr.supercore.interceptors.RuntimeTokenHttpInterceptor",
        "flwr.supercore.interceptors.RuntimeVersionHttpInterceptor",
        "flwr.supercore.retry.make_simple_http_retry_invoker",
        "flwr.supercore.runtime.RuntimeHttpClient.from_server_address",
    )
)

UVICORN_LOOP = Premise(
    "uvicorn.server.Server.main_loop",
    "uvicorn's server loop (uvicorn serves Flower's HTTP APIs): it calls `on_tick` every 0.1 s, "
    "counting the calls",
    "engine.flower.server_ticks",
    "swapped for one that ticks every 0.5 s in the SuperLink and SuperNodes: their ten wakeups "
    "a second each took the CPU from training clients",
    _source_has("await asyncio.sleep(0.1)", "counter % 864000", "await self.on_tick(counter)"),
)
UVICORN_TICK = Premise(
    "uvicorn.server.Server.on_tick",
    "renews the server's Date header when its counter is a multiple of 10, and says whether "
    "the server should exit",
    "engine.flower.server_ticks",
    "the slower loop counts its ticks so that the header is still renewed once a second",
    _source_has("if counter % 10 == 0:", "if self.should_exit:"),
)

PREMISES: tuple[Premise, ...] = (
    PULL_TASK_INPUT,
    CLIENTAPP_EXIT,
    RUNTIME_PUSH,
    PUSH_MESSAGE,
    EXIT_HANDLERS,
    MESSAGE_ID,
    APP_COMMON_ARGS,
    SUPERNODE_TIME,
    SUPERNODE_LOOP,
    SUPEREXEC_TIME,
    SUPEREXEC_LOOP,
    SUBPROCESS_LAUNCH,
    SUPERLINK_APP,
    SUPERLINK_ENTRY,
    SUPERNODE_APP,
    SUPERNODE_ENTRY,
    CLIENTAPP_INSTALL,
    CLIENTAPP_RUN,
    CONSOLE_SCRIPTS,
    GRID,
    RUN,
    UVICORN_LOOP,
    UVICORN_TICK,
    *WORKER_IMPORTS,
)


def broken_premises() -> list[str]:
    """One line per premise the installed Flower breaks: its name, what is wrong, who uses it."""
    return [
        f"{premise.name}: {problem} (used by {premise.used_by})"
        for premise in PREMISES
        if (problem := premise.problem()) is not None
    ]


def swap(premise: Premise, replacement: Any) -> Any:
    """Put `replacement` where `premise` names an attribute of a module or class; the original."""
    owner_name, _, attribute = premise.name.rpartition(".")
    owner = _resolve(owner_name)
    original = getattr(owner, attribute)
    setattr(owner, attribute, replacement)
    return original


@contextlib.contextmanager
def swapped(replacements: dict[Premise, Any]) -> Iterator[None]:
    """`swap` each premise's name for its replacement, and put the originals back after."""
    originals = {premise: swap(premise, value) for premise, value in replacements.items()}
    try:
        yield
    finally:
        for premise, original in originals.items():
            swap(premise, original)
