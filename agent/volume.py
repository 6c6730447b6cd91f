"""The speaker's volume: kept across restarts, and stepped by volume buttons or a rotary encoder.

The voice tool, the buttons and the knob all change the one volume the DeviceBridge holds; the
bridge saves each change here, so the level a person last chose is the level after a restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping

from agent.statefile import StateFile, state_folder
from agent.state import State

log = logging.getLogger(__name__)

FILE_NAME = "volume"
# No session open: a tick at the new level talks over nobody (in a session the reply is the cue).
QUIET_STATES = (State.IDLE, State.OFFLINE, State.MUTED, State.ERROR)


class VolumeStore:
    """The last volume (0-100) in `folder`/volume; without a folder nothing is kept (see
    agent.statefile: under systemd, the unit's StateDirectory=)."""

    def __init__(self, folder: Path | None):
        self._file = StateFile(folder, FILE_NAME, "the volume")

    @property
    def path(self) -> Path | None:
        """The file (None: nothing is kept)."""
        return self._file.path

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> VolumeStore:
        """The store in $STATE_DIRECTORY (its first folder), or one that keeps nothing."""
        return cls(state_folder(environ))

    def load(self) -> int | None:
        """The saved volume, or None (nothing saved, or unreadable: then one warning says so)."""
        data = self._file.read(instead="using [audio] volume")
        if data is None:
            return None
        text = data.decode("ascii", errors="replace").strip()
        if text.isdigit() and 0 <= int(text) <= 100:
            return int(text)
        log.warning("%s holds %r, not a volume 0-100; using [audio] volume", self.path, text[:20])
        return None

    def save(self, percent: int) -> None:
        """Keep percent for the next start (written whole: a new file renamed over the old)."""
        self._file.write(f"{int(percent)}\n".encode("ascii"))


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
