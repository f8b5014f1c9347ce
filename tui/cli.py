"""The `fedtui` command line."""

from __future__ import annotations

import argparse
import sys

from engine.core.config import TRACKERS
from engine.core.errors import FedtuiError
from engine.core.text import printable
from engine.net import federation
from tui import lifecycle, live_commands, recorded
from tui.join import join_command
from tui.lifecycle import DEFAULT_RUNS_DIR


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"fedtui: error: {message} (fedtui --help for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fedtui",
        description="Launch, watch and steer federated fine-tuning of language "
        "models (FedProx on Flower), and look back at saved runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="start a run and watch it")
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="a TOML file or a preset name (default: the offline default)",
    )
    _add_overrides(run, "override one config key (dotted keys reach tables); repeatable")
    run.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run folders go")
    run.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped run from its last global model (--set rounds=N to go further)",
    )
    run.add_argument(
        "--from",
        dest="fork",
        metavar="RUN[@ROUND]",
        help="a new run whose round 0 is RUN's global model after ROUND (default: its best), "
        "with RUN's config, CONFIG's keys and --set on top",
    )
    run.add_argument(
        "--headless",
        action="store_true",
        help="no TUI: plain progress lines (Ctrl+C: stop after this round; twice: abort)",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="run in the background and return: fedtui attach watches it, fedtui stop ends it",
    )
    run.set_defaults(handler=lifecycle.run_command)

    sweep = commands.add_parser(
        "sweep", help="a run for every combination of config values, compared as they finish"
    )
    sweep.add_argument("config", nargs="?", metavar="CONFIG", help="as for fedtui run")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values; repeatable (the members: every combination)",
    )
    _add_overrides(sweep, "override one config key for every member; repeatable")
    sweep.add_argument(
        "--from",
        dest="fork",
        metavar="RUN[@ROUND]",
        help="every member a fork of RUN after ROUND: rounds 1..ROUND are not paid again",
    )
    sweep.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="members running at once (1)"
    )
    sweep.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where the sweep folder goes")
    sweep.add_argument(
        "--headless",
        action="store_true",
        help="no TUI: plain progress lines, then the comparison (Ctrl+C: stop; twice: abort)",
    )
    sweep.set_defaults(handler=lifecycle.sweep_command)

    serve = commands.add_parser(
        "serve", help="start a run whose clients join from other hosts (fedtui join)"
    )
    serve.add_argument("config", nargs="?", metavar="CONFIG", help="as for fedtui run")
    _add_overrides(serve, "override one config key; repeatable (num_clients: how many hosts join)")
    serve.add_argument(
        "--address",
        default=f"0.0.0.0:{federation.DEFAULT_PORT}",
        metavar="HOST:PORT",
        help="where clients reach the SuperLink (default: every interface, port 9092)",
    )
    serve.add_argument(
        "--federation",
        default=federation.DEFAULT_FOLDER,
        metavar="DIR",
        help="the TLS certificates and client keys, written on first use; its authorized_keys "
        "lists who may join (default: ./federation)",
    )
    serve.add_argument(
        "--join-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long the clients have to join before round 0 (600)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="plain text, and any client may join: only on a network you trust",
    )
    serve.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="where run folders go")
    serve.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped served run from its last global model (its clients join again)",
    )
    serve.add_argument("--headless", action="store_true", help="no TUI: plain progress lines")
    serve.set_defaults(handler=lifecycle.serve_command)

    join = commands.add_parser("join", help="be one client of a run served on another host")
    join.add_argument("address", metavar="ADDRESS", help="the server's HOST:PORT")
    join.add_argument(
        "--partition-id", type=int, required=True, metavar="I", help="which client this host is"
    )
    join.add_argument("--ca", metavar="FILE", help="the server's CA certificate (its ca.pem)")
    join.add_argument(
        "--key", metavar="FILE", help="this client's private key (fedtui serve wrote client-I.key)"
    )
    join.add_argument(
        "--device", metavar="DEVICE", help="train on this device (cpu, cuda, cuda:1; default: "
        "the run's)"
    )  # fmt: skip
    join.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up when the server cannot be reached for this long (600)",
    )
    join.add_argument("--insecure", action="store_true", help="plain text (a server --insecure)")
    join.set_defaults(handler=join_command)

    attach = commands.add_parser("attach", help="watch a running run (started elsewhere)")
    attach.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help=f"a run folder (default: the latest running run in ./{DEFAULT_RUNS_DIR})",
    )
    attach.add_argument(
        "--headless",
        action="store_true",
        help="no TUI: plain progress lines until the run ends (Ctrl+C leaves it running)",
    )
    attach.set_defaults(handler=lifecycle.attach_command)

    stop = commands.add_parser("stop", help="end a running run after its current round")
    stop.add_argument("run", metavar="RUN", help="a run folder")
    stop.add_argument("--abort", action="store_true", help="end every process now instead")
    stop.add_argument("--wait", action="store_true", help="return once the run has ended")
    stop.set_defaults(handler=live_commands.stop_command)

    change = commands.add_parser(
        "set", help="change a running run's config from its next round (learning_rate=5e-4 ...)"
    )
    change.add_argument("run", metavar="RUN", help="a run folder")
    change.add_argument(
        "changes", nargs="+", metavar="KEY=VALUE", help="keys that may change live (fedtui config)"
    )
    change.set_defaults(handler=live_commands.set_command)

    hold = commands.add_parser(
        "hold", help="hold a running run after its current round (every process stays up)"
    )
    hold.add_argument("run", metavar="RUN", help="a run folder")
    hold.set_defaults(handler=live_commands.hold_command)

    go_on = commands.add_parser("continue", help="go on with a held run")
    go_on.add_argument("run", metavar="RUN", help="a run folder")
    go_on.set_defaults(handler=live_commands.continue_command)

    runs = commands.add_parser("runs", help="list runs with status, rounds, best eval loss")
    runs.add_argument(
        "folder",
        nargs="?",
        metavar="DIR",
        help=f"a folder of runs (default: the sample runs, and ./{DEFAULT_RUNS_DIR})",
    )
    runs.set_defaults(handler=recorded.runs_command)

    export = commands.add_parser(
        "export", help="per-round metrics of a run, printed or into an experiment tracker"
    )
    export.add_argument("run", metavar="RUN", help="a run folder, or a sample run's name")
    export.add_argument(
        "--format", choices=("csv", "json"), help="printed as csv (default) or json"
    )
    export.add_argument(
        "--to",
        choices=TRACKERS,
        help="into TensorBoard event files, MLflow (its tracking URI) or W&B, as report_to does",
    )
    export.add_argument(
        "--out",
        metavar="DIR",
        help="--to tensorboard: the folder (default ./tensorboard/<run>; a sweep: a folder per "
        "member)",
    )
    export.set_defaults(handler=recorded.export_command)

    export_model = commands.add_parser(
        "export-model", help="write a run's best global model as a save_pretrained folder"
    )
    export_model.add_argument("run", metavar="RUN", help="a run folder")
    export_model.add_argument("out", metavar="OUT", help="a new (or empty) folder to write")
    export_model.set_defaults(handler=recorded.export_model_command)

    replay = commands.add_parser("replay", help="replay saved runs (several: overlaid)")
    replay.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders, or sample runs' names (fedtui runs lists them)",
    )
    replay.set_defaults(handler=recorded.replay_command)

    presets = commands.add_parser("presets", help="list the built-in config presets")
    presets.set_defaults(handler=recorded.presets_command)

    config = commands.add_parser(
        "config", help="every config key: its default, values, help, and whether it is live"
    )
    config.add_argument(
        "--markdown", action="store_true", help="as a markdown table (the README's reference)"
    )
    config.set_defaults(handler=recorded.config_command)

    served = commands.add_parser(
        "web",
        help="the app in a browser (textual-serve), behind a token made at each start",
        usage="fedtui web [--host HOST] [--port PORT] [COMMAND ...]",
    )
    served.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1)")
    served.add_argument("--port", type=_port, default=8000, help="0: any free port (8000)")
    served.add_argument(
        "served",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the fedtui command each page runs, e.g. `replay RUN` (default: the launcher)",
    )
    served.set_defaults(handler=_web_command)
    return parser


def _add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--set KEY=VALUE`, repeatable, into `args.overrides`."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


_SERVABLE = {None, "run", "sweep", "serve", "attach", "replay"}  # the commands that open the app


def _web_command(args: argparse.Namespace) -> int:
    fedtui_args = args.served[1:] if args.served[:1] == ["--"] else args.served
    served = build_parser().parse_args(fedtui_args)  # a bad command: exit 2 before serving
    if (
        served.command not in _SERVABLE
        or vars(served).get("headless")
        or vars(served).get("detach")
    ):
        raise FedtuiError(
            f"fedtui web serves the app: `{' '.join(fedtui_args)}` does not open it "
            "(launcher, run, sweep, serve, attach, replay; not --headless or --detach)"
        )
    from tui import web  # heavy: aiohttp and textual-serve load only to serve

    return web.serve(args.host, args.port, fedtui_args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.handler = lifecycle.launcher_command
    try:
        return args.handler(args)
    except FedtuiError as err:
        print(f"fedtui: error: {printable(str(err))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:  # Ctrl+C before a run started (a run handles its own)
        print("fedtui: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the machine's, not the input's: a full disk, a lost folder
        print(f"fedtui: error: {printable(str(err))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
