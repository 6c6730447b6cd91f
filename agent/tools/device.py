"""What the built-in tools need from the daemon: volume, mute, the conversation, the timers."""

from typing import Protocol

from agent.tools.timers import Timers


class DeviceControls(Protocol):
    """Implemented by the daemon; each method only hands off and returns at once."""

    timers: Timers
    """The speaker's timers (they ring through the daemon's on_ring callback)."""

    def get_volume(self) -> int:
        """Output volume, 0..100."""

    def set_volume(self, percent: int) -> None:
        """Set the output volume, 0..100."""

    def set_muted(self, muted: bool) -> None:
        """Turn the microphone off (True) or on."""

    def end_conversation(self) -> None:
        """Close the session once the current reply has been spoken."""
