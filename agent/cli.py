"""The `mira-agent` command: run, demo, devserver, devices, check."""

from __future__ import annotations

import argparse
import logging
import sys

from agent.errors import EX_CONFIG, ConfigError, MiraAgentError

LEVELS = ["debug", "info", "warning", "error"]


def _setup_logging(level: str) -> None:
    from agent.service.logs import setup_logging
    setup_logging(level)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mira-agent", description="Voice assistant daemon for a "
                                "Raspberry Pi smart speaker, speaking Mira Realtime.")
    p.add_argument("--log-level", choices=LEVELS, default=None, help="log verbosity (default: the "
                   "config's daemon.log_level, else info)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", default="/etc/mira-agent/agent.toml", help="config file (TOML)")
    run.add_argument("--exit-when-done", action="store_true", default=None,
                     help="exit once the input is consumed and the conversation has finished")
    run.add_argument("--trigger-on-start", action="store_true",
                     help="start a conversation at once, as if the wake word had been heard")
    demo = sub.add_parser("demo", help="a whole spoken conversation against a local Mira server")
    demo.add_argument("--dir", default=".demo", help="where the demo's audio files go")
    dev = sub.add_parser("devserver", help="a local Mira-compatible server for trying the device")
    dev.add_argument("args", nargs=argparse.REMAINDER, help="options of the devserver (--help)")
    dv = sub.add_parser("devices", help="list audio devices and mark the ones the config picks")
    dv.add_argument("--config", "-c", default=None, help="config file (TOML)")
    ck = sub.add_parser("check", help="check config, key, audio, wake word, GPIO and server")
    ck.add_argument("--config", "-c", default="/etc/mira-agent/agent.toml", help="config file (TOML)")
    return p


def _level_from_config(path: str | None) -> str:
    from agent import config
    if not path:
        return "info"
    try:
        return config.load(path).settings.daemon.log_level
    except ConfigError:
        return "info"  # the command itself reports the config error


def _dispatch(args) -> int:
    if args.command == "run":
        from agent import daemon
        return daemon.run(args.config, exit_when_done=args.exit_when_done,
                          trigger_on_start=args.trigger_on_start, log_level=args.log_level)
    if args.command == "demo":
        from agent import demo
        return demo.main(args.dir)
    if args.command == "devserver":
        from agent.devserver import main as devserver_main
        return devserver_main(args.args)
    if args.command == "devices":
        from agent.audio.devices import main as devices_main
        return devices_main(args.config)
    if args.command == "check":
        from agent.service.check import main as check_main
        return check_main(args.config)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level or _level_from_config(getattr(args, "config", None)))
    try:
        return _dispatch(args) or 0
    except ConfigError as e:
        print(f"mira-agent: {e}", file=sys.stderr)
        return EX_CONFIG
    except MiraAgentError as e:
        print(f"mira-agent: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: say so in one line, keep the trace for --log-level debug
        logging.getLogger("agent").debug("unexpected error", exc_info=True)
        print(f"mira-agent: unexpected error: {type(e).__name__}: {e} "
              f"(run with --log-level debug for the details, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
