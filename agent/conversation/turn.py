"""A turn: one exchange from the trigger (or the user speaking again) to the end of the reply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Turn:
    """The facts of the turn in progress; a new turn starts with none of the old one's."""

    source: str
    """What started it: "wake word", "button", "voice", "start of input", "follow-up"."""
    manual: bool = False
    """Push-to-talk: the device ends the turn (button released, input ended), not the server's VAD."""
    released: bool = False
    """The button was released before the session was ready: end the turn as soon as it is."""
    speaking: bool = False
    """The server's VAD heard the user start and not yet stop."""
    ignored_response: str | None = None
    """A reply this turn interrupted: its late audio and text are dropped."""
    last: bool = False
    """The user said goodbye: the session ends when this turn's reply has played."""
    offline: bool = False
    """The service cannot be reached: the device hears the command and answers it itself."""
