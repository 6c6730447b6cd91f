"""A hardware volume control: one ALSA mixer control, set with `amixer`."""

from __future__ import annotations

import logging
import shutil
import subprocess

from agent.errors import AudioDeviceError

log = logging.getLogger(__name__)


class AlsaMixer:
    """Sets an ALSA simple mixer control (e.g. PCM, Speaker) in percent, perceptually mapped.

    device: amixer's -D control device ("" for the default card, "hw:1", ...).
    """

    def __init__(self, control: str, device: str = "", timeout_s: float = 2.0):
        self.control = control
        self.device = device
        self._timeout = timeout_s
        self._amixer = shutil.which("amixer")
        if self._amixer is None:
            raise AudioDeviceError(f"[audio] mixer_control = {control!r} needs the amixer command: "
                                   "install alsa-utils, or leave mixer_control empty")

    def _run(self, *args: str) -> str:
        argv = [self._amixer, *(["-D", self.device] if self.device else []), "-M", *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self._timeout)
        except subprocess.TimeoutExpired:
            raise AudioDeviceError(f"amixer did not answer within {self._timeout:g} s for mixer "
                                   f"control {self.control!r}") from None
        if done.returncode:
            why = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise AudioDeviceError(f"mixer control {self.control!r} on "
                                   f"{self.device or 'the default card'} cannot be set ({why}): "
                                   "check [audio] mixer_control against `amixer scontrols`")
        return done.stdout

    def set(self, percent: int) -> None:
        """Set the control to percent (0-100) on every channel."""
        self._run("-q", "sset", self.control, f"{int(percent)}%")

    def get(self) -> int:
        """The control's level in percent (the first channel's)."""
        out = self._run("sget", self.control)
        for line in out.splitlines():
            if "[" in line and "%]" in line:
                return int(line.split("[", 1)[1].split("%", 1)[0])
        raise AudioDeviceError(f"mixer control {self.control!r} has no volume level")
