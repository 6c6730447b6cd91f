"""Settings of the wake-word detector."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.section import Section

Engine = Literal["openwakeword", "porcupine", "none"]
OPENWAKEWORD_MODELS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu")


class PorcupineSettings(Section):
    """[wake.porcupine]: Picovoice Porcupine (needs an AccessKey checked online)."""

    access_key_file: str = ""
    """File with the AccessKey (mode 0600); else credential porcupine-access-key or PORCUPINE_ACCESS_KEY."""
    keywords: list[str] = Field(["jarvis"], min_length=1)
    """Built-in keyword names (alexa, computer, jarvis, porcupine, ...) or paths to .ppn files."""
    sensitivities: list[float] = []
    """One sensitivity 0..1 per keyword (higher: fewer misses, more false wakes); empty means 0.5 each."""

    @field_validator("sensitivities")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 <= s <= 1 for s in v):
            raise ValueError("every sensitivity must be between 0 and 1")
        return v

    @model_validator(mode="after")
    def _one_per_keyword(self):
        if self.sensitivities and len(self.sensitivities) != len(self.keywords):
            raise ValueError(f"give one sensitivity per keyword ({len(self.keywords)}), or none")
        return self


def _check_model(v: str) -> str:
    if v not in OPENWAKEWORD_MODELS and not v.endswith(".tflite"):
        raise ValueError(f"use one of {', '.join(OPENWAKEWORD_MODELS)} or a path to a .tflite file")
    return v


class WakeWord(Section):
    """One wake word of [wake] models: an openWakeWord model and its threshold."""

    model: str
    """hey_jarvis, alexa, hey_mycroft, hey_rhasspy, okay_nabu, or a .tflite path."""
    threshold: float | None = Field(None, gt=0, lt=1)
    """Its own threshold; unset: [wake] threshold."""

    _known_model = field_validator("model")(_check_model)


class WakeSettings(Section):
    """[wake]: what wakes the speaker up."""

    engine: Engine = "openwakeword"
    """openwakeword (offline, default), porcupine, or none (button only)."""
    fallback_engine: Engine = "none"
    """Engine used when the main one cannot start."""
    model: str = "hey_jarvis"
    """openWakeWord model: hey_jarvis, alexa, hey_mycroft, hey_rhasspy, okay_nabu, or a .tflite path."""
    models: list[WakeWord] = []
    """Several wake words at once instead of `model`: names, paths, or {model, threshold} tables."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """Score above which an 80 ms window counts as the wake word (lower: fewer misses, more false wakes)."""
    verifier: str = ""
    """The owner's voice verifier made by `mira-agent enroll` (a path; empty: none). It is asked
    only when a model fires, and can only turn a detection down."""
    verifier_threshold: float = Field(0.5, gt=0, lt=1)
    """Probability from the verifier above which a detection is the owner's voice."""
    trigger_level: int = Field(1, ge=1, le=20)
    """Consecutive windows over the threshold needed to trigger."""
    refractory_s: float = Field(2.0, ge=0, le=30)
    """After a detection, ignore the wake word for this long."""
    vad_gate: bool = True
    """Run the wake model only while webrtcvad hears a voice (and replay what it skipped when one
    starts): the same detections at a fraction of the idle CPU. false: the model hears every frame."""
    send_wake_word: bool = False
    """Send the wake word itself to the server (default: only what follows it)."""
    lookback_ms: int = Field(300, ge=0, le=1000)
    """Audio from before the detection point sent with the command: the engine fires a few hundred
    ms after the word ends, and a command said in one breath must not lose its first word."""
    porcupine: PorcupineSettings = PorcupineSettings()
    """Porcupine's own settings."""

    _known_model = field_validator("model")(_check_model)

    @field_validator("models", mode="before")
    @classmethod
    def _names_are_words(cls, v):
        # `models = ["hey_jarvis", "alexa"]` is short for tables with only a model
        return [{"model": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _one_way_to_name_models(self):
        if self.models and "model" in self.model_fields_set:
            raise ValueError("give the wake words as either model = \"...\" or models = [...], not both "
                             "(remove wake.model)")
        names = [Path(w.model).stem for w in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{twice[0]} is listed twice in wake.models; list each wake word once")
        return self

    def wake_words(self) -> list[tuple[str, float]]:
        """(model, threshold) of every wake word listened for, in order."""
        if not self.models:
            return [(self.model, self.threshold)]
        return [(w.model, self.threshold if w.threshold is None else w.threshold) for w in self.models]
