"""The daemon: builds the parts from the config, runs the conversation, handles signals."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

from agent import config as config_mod
from agent.config import Config
from agent.conversation import Conversation
from agent.errors import ConfigError, SecretError
from agent.state import State

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything the conversation drives; closed together, in reverse order of opening."""

    closers: list[Callable[[], None]] = field(default_factory=list)

    def add(self, part):
        if part is not None and hasattr(part, "close"):
            self.closers.append(part.close)
        return part

    def close(self) -> None:
        while self.closers:
            closer = self.closers.pop()
            try:
                closer()
            except Exception as e:  # closing must go on for the other parts
                log.warning("closing %s failed: %s", getattr(closer, "__self__", closer), e)


def require_api_key(config: Config) -> str:
    key = config.api_key()
    if not key:
        raise SecretError("no API key: put it in the systemd credential mira-api-key, in a file "
                          "named by server.api_key_file (mode 0600), or in MIRA_API_KEY")
    return key


def build_conversation(config: Config, parts: Parts, *, api_key: str | None = None,
                       trigger_on_start: bool = False, on_state=None,
                       watchdog=None) -> Conversation:
    """The conversation with every part the config asks for, opened and registered in `parts`."""
    from agent.audio.factory import open_microphone, open_speaker

    s = config.settings
    key = api_key if api_key is not None else require_api_key(config)
    speaker = parts.add(open_speaker(s.audio, config.resolve))
    mic = parts.add(open_microphone(s.audio, config.resolve))
    return Conversation(config, api_key=key, mic=mic, speaker=speaker, on_state=on_state,
                        trigger_on_start=trigger_on_start, watchdog=watchdog)


def run(config_path: str, *, exit_when_done: bool | None = None, trigger_on_start: bool = False) -> int:
    """`mira-agent run`: the daemon until SIGTERM (or, with exit_when_done, the input's end)."""
    config = config_mod.load(config_path)
    if exit_when_done is not None:
        config = Config(config.settings.model_copy(update={"daemon": config.settings.daemon.model_copy(
            update={"exit_when_done": exit_when_done})}), config.path)
    parts = Parts()
    try:
        conversation = build_conversation(config, parts, trigger_on_start=trigger_on_start)
        _install_signals(conversation, config_path)
        return conversation.run()
    finally:
        parts.close()


def _install_signals(conversation: Conversation, config_path: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        conversation.stop()

    def reload(signum, frame):
        try:
            new = config_mod.load(config_path)
        except ConfigError as e:
            log.error("SIGHUP: new config refused, keeping the old one: %s", e)
            return
        conversation.post("reload", new)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


__all__ = ["Parts", "build_conversation", "run", "require_api_key", "State"]
