"""The daemon: builds the parts from the config, runs the conversation, handles signals."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from agent import config as config_mod
from agent.config import Config
from agent.conversation import Conversation, Reopen
from agent.errors import MiraAgentError, SecretError
from agent.service.logs import native_chatter_hidden
from agent.state import State

if TYPE_CHECKING:
    from agent.hooks import HookRunner
    from agent.volume import VolumeStore

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything the conversation drives; closed together, in reverse order of opening."""

    closers: list[Callable[[], None]] = field(default_factory=list)
    bridge: DeviceBridge | None = None
    """What the tools control; a toolbox rebuilt on reload gets the same one."""
    hooks: HookRunner | None = None
    """The [hooks] program's runner; a reload gives it the new settings."""
    on_volume: Callable[[int], None] | None = None
    """What volume buttons and the encoder call (+1/-1); buttons reopened on reload get it too."""

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


class DeviceBridge:
    """What the built-in tools control (volume, mute, goodbye, timers), handed to the conversation."""

    def __init__(self, speaker, post: Callable[..., None], volume: int, *, ring_s: float,
                 max_timers: int, store: VolumeStore | None = None):
        from agent.tools.timers import Timers

        self._speaker = speaker
        self._post = post
        self._volume = volume
        self._store = store  # every change is kept for the next start
        self.timers = Timers(on_ring=lambda t: post("timer_ring", t),
                             on_quiet=lambda: post("timer_quiet"), ring_s=ring_s,
                             max_timers=max_timers)

    def get_volume(self) -> int:
        return self._volume

    def set_volume(self, percent: int) -> None:
        self._volume = max(0, min(100, int(percent)))
        set_volume = getattr(self._speaker, "set_volume", None)
        if set_volume is not None:
            set_volume(self._volume)
        else:
            self._speaker.buffer.volume = self._volume
        if self._store is not None:
            self._store.save(self._volume)

    def set_muted(self, muted: bool) -> None:
        self._post("mute", bool(muted))

    def end_conversation(self) -> None:
        self._post("end_after_reply")

    def close(self) -> None:
        self.timers.close()


class Faults:
    """What keeps the speaker from working, by part (microphone, speaker, trigger).

    While any remains the conversation shows ERROR with a sentence (STATUS=, LEDs, log); when
    the last clears it goes back to IDLE. Parts report from their own threads, and before the
    conversation exists: reports are kept and the current state is posted once it attaches.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: dict[str, str] = {}
        self._post: Callable[..., None] | None = None

    def reporter(self, part: str) -> Callable[[bool, str], None]:
        """A device's on_state callback for `part`."""
        return lambda ok, message: self.report(part, ok, message)

    def report(self, part: str, ok: bool, message: str = "") -> None:
        with self._lock:
            if ok == (part not in self._faults):
                return  # nothing new: a part that was fine stays fine, a fault stays reported
            if ok:
                del self._faults[part]
            else:
                self._faults[part] = message
            post, sentence = self._post, self.sentence
        if post is not None:
            post("device", sentence is None, sentence or message)

    @property
    def sentence(self) -> str | None:
        """The first remaining fault's sentence, or None when everything works."""
        return next(iter(self._faults.values()), None)

    def attach(self, post: Callable[..., None]) -> None:
        """From now on post ("device", ok, sentence) to the conversation; posts a fault already known."""
        with self._lock:
            self._post, sentence = post, self.sentence
        if sentence is not None:
            post("device", False, sentence)


def _can_talk(conversation: Conversation) -> bool:
    """A talk button (or an encoder's push switch set to talk) is open on its pin."""
    buttons = conversation.buttons
    switch = conversation.config.settings.button.encoder_switch == "talk"
    return getattr(buttons, "talk", None) is not None or \
        (switch and getattr(buttons, "encoder_switch", None) is not None)


def _trigger_state(conversation: Conversation, trigger_on_start: bool) -> tuple[bool, str]:
    """(True, "") when something can start a conversation, else (False, the sentence saying so)."""
    if conversation.detector is not None or _can_talk(conversation) or trigger_on_start:
        return True, ""
    s = conversation.config.settings
    wake = "the wake word is off" if s.wake.engine == "none" else "the wake word did not load"
    talk_pin = s.button.pin if s.button.pin is not None else \
        s.button.encoder_switch_pin if s.button.encoder_switch == "talk" else None
    button = "no talk button is set" if talk_pin is None else "the talk button cannot be used"
    return False, (f"nothing can start a conversation: {wake} and {button}; set [wake] model or "
                   f"[button] pin (mira-agent check says more), then reload")


def waiting_for(conversation: Conversation) -> str:
    """What the idle speaker waits for, as STATUS= says it."""
    ways = [w for w, there in (("the wake word", conversation.detector is not None),
                               ("the button", _can_talk(conversation))) if there]
    return "waiting for " + " or ".join(ways) if ways else "waiting"


# Settings only read when the parts are built: a reload cannot apply them (None: the whole section).
RESTART_ONLY: dict[str, tuple[str, ...] | None] = {
    "audio": None, "echo": ("enabled", "delay_ms"),
    "reconnect": ("base_s", "cap_s", "stable_s", "buffer_s"),
    "toolbox": ("timer_ring_s", "max_timers"),
}


def restart_needed(old: Config, new: Config) -> list[str]:
    """The changed settings that only a restart applies, as section.key."""
    changed = []
    for section, keys in RESTART_ONLY.items():
        before, after = getattr(old.settings, section), getattr(new.settings, section)
        for key in keys or type(before).model_fields:
            if getattr(before, key) != getattr(after, key):
                changed.append(f"{section}.{key}")
    return changed


def require_api_key(config: Config) -> str:
    key = config.api_key()
    if not key:
        raise SecretError("no API key: put it in the systemd credential mira-api-key, in a file "
                          "named by server.api_key_file (mode 0600), or in MIRA_API_KEY")
    return key


def build_conversation(config: Config, parts: Parts, *, api_key: str | None = None,
                       trigger_on_start: bool = False, on_state=None,
                       watchdog=None, faults: Faults | None = None) -> Conversation:
    """The conversation with every part the config asks for, opened and registered in `parts`.

    An audio device that is absent now, or no way to start a conversation, does not raise: it is
    reported to `faults`, which shows ERROR with its sentence until it is fixed.
    """
    from agent.audio.devices import open_microphone, open_speaker
    from agent.audio.echo import open_echo_canceller
    from agent.audio.vad import VoiceActivity

    s = config.settings
    key = api_key if api_key is not None else require_api_key(config)
    from agent.tools.toolbox import Toolbox

    from agent.gpio.factory import open_buttons, open_lights
    from agent.hooks import open_hooks
    from agent.sounds.earcons import load_earcons
    from agent.volume import VolumeKnob, VolumeStore
    from agent.wake.factory import open_detector

    earcons = load_earcons(s.sounds, config.resolve)
    faults = faults or Faults()
    store = VolumeStore.from_environment()  # the volume last chosen wins over [audio] volume
    saved = store.load()
    audio = s.audio if saved is None else s.audio.model_copy(update={"volume": saved})
    speaker = parts.add(open_speaker(audio, config.resolve, on_state=faults.reporter("speaker")))
    mic = parts.add(open_microphone(s.audio, config.resolve, on_state=faults.reporter("microphone")))
    # WAV files have no acoustic echo (and the file backend's tests compare exact samples)
    echo = parts.add(open_echo_canceller(s.echo, speaker)) if s.audio.backend == "alsa" else None
    voice = VoiceActivity.from_settings(s.echo) if echo is not None else None
    with native_chatter_hidden():  # TFLite's line at every model load
        detector = parts.add(open_detector(s.wake, base_dir=config.base_dir))
    lights = parts.add(open_lights(s.leds))
    hooks = parts.hooks = parts.add(open_hooks(s.hooks, config.resolve, secrets=(key,)))

    def state_changed(state: State, reason: str) -> None:
        if on_state is not None:
            on_state(state, reason)
        hooks.state(state, reason)

    conversation = Conversation(config, api_key=key, mic=mic, speaker=speaker, detector=detector,
                                lights=lights, earcons=earcons, echo=echo, voice=voice,
                                on_state=state_changed, on_event=hooks.event,
                                trigger_on_start=trigger_on_start, watchdog=watchdog)
    bridge = parts.bridge = parts.add(DeviceBridge(speaker, conversation.post, audio.volume,
                                                   ring_s=s.toolbox.timer_ring_s,
                                                   max_timers=s.toolbox.max_timers, store=store))
    parts.on_volume = VolumeKnob(bridge, conversation, on_change=hooks.volume).post
    conversation.buttons = parts.add(open_buttons(s.button, conversation.on_button, parts.on_volume))
    conversation.timers = bridge.timers
    conversation.toolbox = parts.add(Toolbox(s.tools, bridge, config.resolve, builtins=s.toolbox.builtins))
    conversation.assistant = _offline_assistant(config, conversation.toolbox, bridge)
    faults.report("trigger", *_trigger_state(conversation, trigger_on_start))
    faults.attach(conversation.post)
    return conversation


def _offline_assistant(config: Config, toolbox, bridge: DeviceBridge):
    """What answers while the service is unreachable; it loads its recogniser only then."""
    from agent.offline.assistant import OfflineAssistant

    return OfflineAssistant(config.settings.offline, toolbox, bridge.timers, base_dir=config.base_dir)


def rebuild_parts(old: Config, new: Config, parts: Parts, on_button: Callable, *,
                  api_key: str | None = None) -> dict:
    """The parts a reloaded config changes, built but not swapped in (the loop does that).

    A MiraAgentError means the new config cannot run: whatever was built is closed again. LEDs
    and buttons hold GPIO pins the running ones own: the loop closes those, then opens the new.
    """
    from agent.gpio.factory import open_buttons, open_lights
    from agent.sounds.earcons import load_earcons
    from agent.tools.toolbox import Toolbox
    from agent.wake.factory import open_detector

    s = new.settings
    built = {"earcons": load_earcons(s.sounds, new.resolve),
             "toolbox": Toolbox(s.tools, parts.bridge, new.resolve, builtins=s.toolbox.builtins)}
    try:
        if s.wake != old.settings.wake or s.wake.verifier:  # a re-enrolled verifier keeps its name
            with native_chatter_hidden():
                built["detector"] = open_detector(s.wake, base_dir=new.base_dir)
        if s.offline != old.settings.offline:  # e.g. a Piper voice file that is not there
            built["assistant"] = _offline_assistant(new, built["toolbox"], parts.bridge)
    except BaseException:
        for part in built.values():
            if hasattr(part, "close"):
                part.close()
        raise
    for part in built.values():
        parts.add(part)  # closed at exit even if the loop never swaps it in
    if s.leds != old.settings.leds:
        built["lights"] = Reopen(lambda: parts.add(open_lights(s.leds)))
    if s.button != old.settings.button:
        built["buttons"] = Reopen(lambda: parts.add(open_buttons(s.button, on_button, parts.on_volume)))
    if parts.hooks is not None:  # last: nothing after it can refuse the new config
        parts.hooks.configure(s.hooks, new.resolve, secrets=(api_key,) if api_key else ())
    return built


def run(config_path: str, *, exit_when_done: bool | None = None, trigger_on_start: bool = False,
        log_level: str | None = None) -> int:
    """`mira-agent run`: the daemon until SIGTERM (or, with exit_when_done, the input's end)."""
    from agent.service.logs import register_secret, set_speech_logged
    from agent.service.notify import Notifier, Watchdog

    notifier = Notifier()
    config = config_mod.load(config_path)
    if exit_when_done is not None:
        config = Config(config.settings.model_copy(update={"daemon": config.settings.daemon.model_copy(
            update={"exit_when_done": exit_when_done})}), config.path)
    key = require_api_key(config)
    register_secret(key)
    set_speech_logged(config.settings.logging.speech)
    parts = Parts()
    faults = Faults()
    try:
        conversation = build_conversation(
            config, parts, api_key=key, trigger_on_start=trigger_on_start, watchdog=Watchdog(notifier),
            on_state=lambda state, reason: reason == "started" or notifier.status(f"{state.value}: {reason}"),
            faults=faults)
        _install_signals(conversation, parts, config_path, notifier, log_level, faults, trigger_on_start)

        def ready() -> None:  # on the loop: the microphone has been tried, the loop turns
            fault = faults.sentence
            notifier.ready(f"error: {fault}" if fault else f"idle: {waiting_for(conversation)}")

        conversation.call_soon(ready)
        code = conversation.run()
        notifier.stopping("stopped")
        return code
    finally:
        parts.close()
        notifier.close()


def _install_signals(conversation: Conversation, parts: Parts, config_path: str, notifier,
                     log_level: str | None, faults: Faults, trigger_on_start: bool) -> None:
    from agent.service.logs import register_secret, set_speech_logged
    from agent.service.reload import ReloadRecorder

    if threading.current_thread() is not threading.main_thread():
        return
    verdicts = ReloadRecorder()

    def stop(signum, frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        notifier.stopping("stopping")
        conversation.stop()

    def reload(signum, frame):
        notifier.reloading("reloading the config")
        try:
            new = config_mod.load(config_path)
            key = require_api_key(new)  # a fixed key is the usual reason for a reload
            rebuilt = rebuild_parts(conversation.config, new, parts, conversation.on_button, api_key=key)
        except MiraAgentError as e:
            log.error("SIGHUP: the new config is refused, the old one stays: %s", e)
            notifier.ready(f"{conversation.state.value}: new config refused: {e}")
            verdicts.record(False, f"the new config is refused, the old one stays: {e}")
            return
        if log_level is None:
            from agent.service.logs import setup_logging
            setup_logging(new.settings.daemon.log_level)
        set_speech_logged(new.settings.logging.speech)
        register_secret(key)
        pending = restart_needed(conversation.config, new)
        conversation.post("reload", new, rebuilt, key)
        # after the swap, on the loop: the new wake word and buttons decide what can start a turn
        conversation.call_soon(lambda: faults.report("trigger", *_trigger_state(conversation,
                                                                                trigger_on_start)))
        said = "config reloaded"
        if pending:
            said += (f"; {', '.join(pending)} changed and apply only after a restart "
                     f"(sudo systemctl restart mira-agent)")
            log.warning("SIGHUP: %s", said)
        notifier.ready(f"{conversation.state.value}: {said}")
        verdicts.record(True, said)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


__all__ = ["Faults", "Parts", "build_conversation", "run", "require_api_key", "restart_needed", "State"]
