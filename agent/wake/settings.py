"""Settings of the wake-word detector."""

from typing import Literal

from pydantic import Field

from agent.section import Section

Engine = Literal["openwakeword", "porcupine", "none"]


class PorcupineSettings(Section):
    """[wake.porcupine]: Picovoice Porcupine (needs an AccessKey checked online)."""

    access_key_file: str = ""
    """File with the AccessKey (mode 0600); else credential porcupine-access-key or PORCUPINE_ACCESS_KEY."""
    keywords: list[str] = ["jarvis"]
    """Built-in keyword names or paths to .ppn files."""
    sensitivities: list[float] = []
    """One sensitivity 0..1 per keyword; empty means 0.5 each."""


class WakeSettings(Section):
    """[wake]: what wakes the speaker up."""

    engine: Engine = "openwakeword"
    """openwakeword (offline, default), porcupine, or none (button only)."""
    fallback_engine: Engine = "none"
    """Engine used when the main one cannot start."""
    model: str = "hey_jarvis"
    """openWakeWord model: hey_jarvis, alexa, hey_mycroft, hey_rhasspy, okay_nabu, or a .tflite path."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """Score above which a window counts as the wake word."""
    trigger_level: int = Field(1, ge=1, le=20)
    """Consecutive windows over the threshold needed to trigger."""
    refractory_s: float = Field(2.0, ge=0, le=30)
    """After a detection, ignore the wake word for this long."""
    send_wake_word: bool = False
    """Send the wake word itself to the server (default: only what follows it)."""
    porcupine: PorcupineSettings = PorcupineSettings()
    """Porcupine's own settings."""
