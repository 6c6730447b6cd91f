"""Settings of the offline answers: [offline]."""

from pydantic import Field, field_validator

from agent.section import Section


class OfflineSettings(Section):
    """[offline]: answering timers, the time, stop and volume on the device when Mira is unreachable."""

    enabled: bool = True
    """Answer the offline commands when the service cannot be reached (needs the `offline` extra)."""
    voice: str = "en-us"
    """An espeak-ng voice (en-us, en-gb, en-us+f3, ...) or the path of a Piper voice (.onnx)."""
    speed_wpm: int = Field(165, ge=80, le=400)
    """espeak-ng's speaking rate, in words per minute."""
    max_command_s: float = Field(8.0, ge=2, le=30)
    """Longest command recorded; it ends earlier at the end of speech."""
    end_silence_ms: int = Field(600, ge=200, le=3000)
    """Quiet after speech that ends the command."""
    check_interval_s: float = Field(30.0, ge=5, le=3600)
    """While the link is down, how often a connection attempt (no session) checks for its return."""

    @field_validator("voice")
    @classmethod
    def _voice(cls, voice: str) -> str:
        if not voice.strip():
            raise ValueError("the voice is empty; use an espeak-ng voice such as en-us, "
                             "or the path of a Piper .onnx voice")
        return voice
