"""The `mira-agent` command: run, demo, devserver, devices, check, reload, enroll, wake-test."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from agent.errors import EX_CONFIG, ConfigError, MiraAgentError

LEVELS = ["debug", "info", "warning", "error"]


def _setup_logging(level: str) -> None:
    from agent.service.logs import setup_logging
    setup_logging(level)


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after the command's name."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given after the command must not be reset by the command's own default.
    common.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS,
                        help="log verbosity (default: the config's daemon.log_level, else info)")
    return common


def add_devserver_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The devserver's options. Defined here, not in agent.devserver (whose package needs the
    devserver extra), so that `mira-agent devserver --help` lists them on any install."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless --allow-remote)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (0: a free one)")
    p.add_argument("--api-key-file", default="",
                   help="file (mode 0600) holding the one key to accept; default: any key")
    p.add_argument("--script", default="", help="TOML script of phrases and replies (default: built in)")
    p.add_argument("--speed", type=float, default=10.0,
                   help="send reply audio this many times faster than real time (0: no pauses)")
    p.add_argument("--reply-delay-ms", type=int, default=0,
                   help="wait this long before each reply starts, as a real service does (default 0)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding a non-loopback address (the dev server has no real security)")
    return p


def _parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(prog="mira-agent", parents=[common],
                                description="Voice assistant daemon for a Raspberry Pi smart speaker, "
                                "speaking Mira Realtime.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[common])

    run = command("run", "run the daemon")
    run.add_argument("--config", "-c", default="/etc/mira-agent/agent.toml", help="config file (TOML)")
    run.add_argument("--exit-when-done", action="store_true", default=None,
                     help="exit once the input is consumed and the conversation has finished")
    run.add_argument("--trigger-on-start", action="store_true",
                     help="start a conversation at once, as if the wake word had been heard")
    demo = command("demo", "a whole spoken conversation against a local Mira server")
    demo.add_argument("--dir", default=".demo", help="where the demo's audio files go")
    add_devserver_options(command("devserver", "a local Mira-compatible server for trying the device "
                                  "(needs the devserver extra)"))
    dv = command("devices", "list audio devices and mark the ones the config picks")
    dv.add_argument("--config", "-c", default=None, help="config file (TOML)")
    ck = command("check", "check config, key, audio, wake word, GPIO, tools and server")
    ck.add_argument("--config", "-c", default="/etc/mira-agent/agent.toml", help="config file (TOML)")
    ck.add_argument("--offline", action="store_true",
                    help="check everything but the server (no connection, no online key check)")
    ck.add_argument("--unit", default=None, help="check tools against this systemd unit's sandbox "
                    "(default: the installed mira-agent.service, if any)")
    rl = command("reload", "re-read the running daemon's config and wait for its verdict (the "
                 "unit's ExecReload): exit 1 when the new config is refused")
    rl.add_argument("--pid", type=int, required=True, help="the daemon's process id ($MAINPID)")
    rl.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the verdict")
    _wake_commands(command)
    return p


def _wake_commands(command) -> None:
    en = command("enroll", "learn the owner's voice saying the wake word (a verifier that turns "
                 "other voices down) and suggest a threshold")
    wt = command("wake-test", "score the wake word(s) on your clips and suggest a threshold")
    for p in (en, wt):
        p.add_argument("--config", "-c", default="/etc/mira-agent/agent.toml", help="config file (TOML)")
        p.add_argument("wavs", nargs="*", metavar="WAV", help="clips of you saying the wake word "
                       "(16-bit WAV); none: record them through the configured microphone")
        p.add_argument("--seconds", type=float, default=3.0, help="length of each recorded clip")
    en.add_argument("--count", type=int, default=5, help="clips to record (default 5)")
    wt.add_argument("--count", type=int, default=3, help="clips to record (default 3)")
    en.add_argument("--model", help="the configured wake word to enroll (default: the first)")
    en.add_argument("--out", help="verifier file to write (default: wake-verifier.npz beside the config)")
    en.add_argument("--negative", action="append", default=[], metavar="WAV",
                    help="a clip of you saying something else (may be repeated)")


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
        from agent.extras import require_extra
        require_extra("devserver", "devserver")
        from agent.devserver.cli import serve
        return serve(args)
    if args.command == "devices":
        from agent.audio.devices import main as devices_main
        return devices_main(args.config)
    if args.command == "check":
        from agent.service.check import main as check_main
        return check_main(args.config, offline=args.offline, unit=args.unit)
    if args.command == "reload":
        from agent.service.reload import main as reload_main
        return reload_main(args.pid, args.timeout)
    if args.command in ("enroll", "wake-test"):
        from agent.wake import enroll
        if args.command == "enroll":
            return enroll.enroll(args.config, args.wavs, model=args.model, count=args.count,
                                 seconds=args.seconds, out_path=args.out, negative_wavs=args.negative)
        return enroll.wake_test(args.config, args.wavs, count=args.count, seconds=args.seconds)
    raise AssertionError(args.command)


def _exit_at_once(code: int) -> None:
    """End the daemon's process without the interpreter's teardown.

    Its parts are closed by now, but a thread may outlive the loop (a realtime reader still in a
    10 s connect, say) and keep native objects alive; at teardown their libraries then print
    leak reports to stderr (nanobind: "leaked 1 instances ... CSoxr", ~17 lines), noise in the
    journal at every stop. Logs and stdio are flushed first: nothing of ours is lost.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.log_level = getattr(args, "log_level", None)
    _setup_logging(args.log_level or _level_from_config(getattr(args, "config", None)))
    code = _main(args)
    if args.command == "run":
        _exit_at_once(code)
    return code


def _main(args: argparse.Namespace) -> int:
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
