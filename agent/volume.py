"""The speaker's volume: kept across restarts, and stepped by volume buttons or a rotary encoder.

The voice tool, the buttons and the knob all change the one volume the DeviceBridge holds; the
bridge saves each change here, so the level a person last chose is the level after a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Mapping

from agent.ratelog import RateLimitedLog
from agent.state import State

log = logging.getLogger(__name__)

FILE_NAME = "volume"
# No session open: a tick at the new level talks over nobody (in a session the reply is the cue).
QUIET_STATES = (State.IDLE, State.OFFLINE, State.MUTED, State.ERROR)


class VolumeStore:
    """The last volume (0-100) in `folder`/volume; without a folder nothing is kept.

    Under systemd the folder is the unit's StateDirectory= ($STATE_DIRECTORY,
    /var/lib/mira-agent): it survives restarts, reboots and package upgrades.
    """

    def __init__(self, folder: Path | None):
        self.path = folder / FILE_NAME if folder is not None else None
        self._lock = threading.Lock()  # the tool thread and the conversation thread both save
        self._ratelog = RateLimitedLog(log, interval_s=600)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> VolumeStore:
        """The store in $STATE_DIRECTORY (its first folder), or one that keeps nothing."""
        folder = environ.get("STATE_DIRECTORY", "").split(":")[0]
        return cls(Path(folder) if folder else None)

    def load(self) -> int | None:
        """The saved volume, or None (nothing saved, or unreadable: then one warning says so)."""
        if self.path is None:
            return None
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            log.warning("cannot read the saved volume from %s (%s); using [audio] volume", self.path, e)
            return None
        if text.isdigit() and 0 <= int(text) <= 100:
            return int(text)
        log.warning("%s holds %r, not a volume 0-100; using [audio] volume", self.path, text[:20])
        return None

    def save(self, percent: int) -> None:
        """Keep percent for the next start (written whole: a new file renamed over the old)."""
        if self.path is None:
            return
        with self._lock:
            tmp = self.path.with_name(f".{FILE_NAME}.new")
            try:
                tmp.write_text(f"{int(percent)}\n", encoding="ascii")
                os.replace(tmp, self.path)
            except OSError as e:
                self._ratelog(logging.WARNING, "save", f"cannot save the volume to {self.path} "
                              f"({e.strerror or e}); it will not survive a restart")


class VolumeKnob:
    """What a volume button press or an encoder detent does.

    post(step) is for gpiozero's threads: it hands the step to the conversation thread, where
    turn(step) changes the bridge's volume by step x [button] volume_step, shows the level on the
    LEDs, sounds the volume earcon when no session is open, and tells on_change the new level.
    """

    def __init__(self, bridge, conversation, on_change: Callable[[int], None] | None = None):
        self._bridge = bridge
        self._conversation = conversation
        self._on_change = on_change

    def post(self, step: int) -> None:
        self._conversation.call_soon(lambda: self.turn(step))

    def turn(self, step: int) -> None:
        c = self._conversation
        size = c.config.settings.button.volume_step  # read now: a reload may have changed it
        level = max(0, min(100, self._bridge.get_volume() + step * size))
        self._bridge.set_volume(level)
        log.info("volume %d %% (turned %s by a button or the knob)", level, "up" if step > 0 else "down")
        if c.lights is not None:
            c.lights.level(level)
        sound = c.earcons.get("volume")
        if sound is not None and c.state in QUIET_STATES and c.speaker.drained():
            c.speaker.play(sound, None)  # a spun knob does not queue up a string of ticks
        if self._on_change is not None:
            self._on_change(level)
