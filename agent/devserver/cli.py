"""`mira-agent devserver`: run the local Mira-compatible server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading

from agent.cli import add_devserver_options
from agent.errors import EX_CONFIG, ConfigError
from agent.secrets import find_secret


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mira-agent devserver",
                                description="A local Mira-compatible realtime server (no key, no network).")
    add_devserver_options(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse argv (without the program and subcommand), serve until a signal; an exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    """Serve with the options of agent.cli.add_devserver_options until SIGINT or SIGTERM."""
    from agent.devserver.script import Script
    from agent.devserver.server import DevServer
    try:
        api_key = find_secret(credential="mira-devserver-api-key", file=args.api_key_file,
                              env="MIRA_DEVSERVER_API_KEY", what="devserver API key", key="--api-key-file")
        script = Script.load(args.script) if args.script else Script.default()
        server = DevServer(args.host, args.port, api_key, script, allow_remote=args.allow_remote,
                           speed=args.speed if args.speed > 0 else math.inf,
                           reply_delay_ms=args.reply_delay_ms)
        server.start()
    except ConfigError as e:
        print(f"mira-agent devserver: {e}", file=sys.stderr)
        return EX_CONFIG
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the line that tells a script it may stop us
        signal.signal(sig, lambda *_: done.set())
    print(f"devserver listening on {server.url} "
          f"({'any key accepted' if api_key is None else 'one key accepted'}); Ctrl-C stops it", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
