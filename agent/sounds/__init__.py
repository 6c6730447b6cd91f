"""Earcons: short sounds on wake, at a session's end, on an error, for a ringing timer and a volume step."""

from agent.sounds.earcons import EARCONS, load_earcons, load_wav
from agent.sounds.tones import tone

__all__ = ["EARCONS", "load_earcons", "load_wav", "tone"]
