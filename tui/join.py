"""`fedtui join`: this host's client of a run served elsewhere, as status lines."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from engine.core.errors import FedtuiError
from engine.net.federation import JOIN_PLAIN_TEXT_WARNING, parse_address
from engine.run.client_host import ClientHost, JoinSettings


def join_command(args: argparse.Namespace) -> int:
    if args.insecure and args.ca:
        raise FedtuiError("--ca and --insecure: choose one (the server's TLS, or plain text)")
    if not args.insecure and args.ca is None:
        raise FedtuiError("--ca: the server's CA certificate (its ca.pem), or --insecure")
    settings = JoinSettings(
        parse_address(args.address, "ADDRESS"),
        args.partition_id,
        ca=Path(args.ca) if args.ca else None,
        key=Path(args.key) if args.key else None,
        device=args.device,
        wait_s=args.wait,
    )
    settings.check()
    line = StatusLine(live=sys.stdout.isatty())
    if settings.ca is None:
        line.show(JOIN_PLAIN_TEXT_WARNING, passing=False)
    host = ClientHost(settings, line.show)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: host.stop())
    code = host.run()
    line.end()
    return code


class StatusLine:
    """Lines as they come; a passing one (a training step) rewrites itself on a terminal and is
    left out elsewhere."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._passing = False

    def show(self, text: str, passing: bool) -> None:
        if passing and not self.live:
            return
        if self._passing:
            sys.stdout.write("\r\x1b[K")
        sys.stdout.write(f"fedtui join: {text}" + ("" if passing else "\n"))
        sys.stdout.flush()
        self._passing = passing

    def end(self) -> None:
        if self._passing:
            sys.stdout.write("\n")
            self._passing = False
