"""openWakeWord through pyopen-wakeword: offline, bundled models, 80 ms steps at 16 kHz."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from agent.wake import tflite
from agent.wake.detector import WakeDetector, WakeEngineError
from agent.wake.settings import OPENWAKEWORD_MODELS

log = logging.getLogger(__name__)

BUILTIN_MODELS = OPENWAKEWORD_MODELS
STEP_SAMPLES = 1280  # 80 ms at 16 kHz: one melspectrogram window, one embedding, one score
# Silence the library pre-fills after a reset: it fills 8 s, but its windows (76 mel frames per
# embedding, 16 embeddings per score) span about 2 s, so 3 s gives the same state in 40 % of the time.
_PRIME_SAMPLES = 38 * 1280  # about 3 s, whole 80 ms steps: the same step phase as the 8 s fill
_MEL_SHAPE = (1, 1760)
_EMB_SHAPE = (1, 76, 32, 1)


def _check_model_file(path: Path) -> None:
    # A file that is not a TFLite flatbuffer crashes the C library: check its identifier first.
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise WakeEngineError(f"cannot read wake-word model {path} ({e.strerror})") from None
    if head[4:8] != b"TFL3":
        raise WakeEngineError(f"wake-word model {path} is not a TFLite (.tflite) model")


class OpenWakeWordDetector(WakeDetector):
    """openWakeWord: fires when `trigger_level` consecutive 80 ms windows score over `threshold`."""

    engine = "openwakeword"

    def __init__(self, model: str | Path = "hey_jarvis", *, threshold: float = 0.5,
                 trigger_level: int = 1, refractory_s: float = 2.0):
        try:
            from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
        except ImportError as e:  # no wheel for this platform (e.g. armv7l) or not installed
            raise WakeEngineError(f"pyopen-wakeword cannot be loaded ({e}); "
                                  f"install it with pip install 'mira-agent[wake]'") from None
        super().__init__(step_samples=STEP_SAMPLES, refractory_s=refractory_s)
        self.threshold = threshold
        self.trigger_level = trigger_level
        self._run = 0
        self._delegates: list[int] = []
        if str(model) in BUILTIN_MODELS:
            self.model = str(model)
            self._ww = OpenWakeWord.from_builtin(Model(self.model))
        else:
            path = Path(model)
            _check_model_file(path)
            self.model = path.stem
            self._ww = OpenWakeWord.from_model(path)
        self._features = OpenWakeWordFeatures.from_builtin()
        fast = [tflite.speed_up(self._features, ("mel_model", "mel_interpreter", "mel_input_tensor",
                                                 "mel_output_tensor"), _MEL_SHAPE, self._delegates),
                tflite.speed_up(self._features, ("emb_model", "emb_interpreter", "emb_input_tensor",
                                                 "emb_output_tensor"), _EMB_SHAPE, self._delegates),
                tflite.speed_up(self._ww, ("model", "interpreter", "input_tensor", "output_tensor"),
                                None, self._delegates)]
        if not all(fast):
            log.debug("openwakeword runs on TFLite's default interpreters (slower)")
        self._prime()

    @property
    def name(self) -> str:
        return f"openwakeword {self.model}"

    def _prime(self) -> None:
        # The library fills its history with silence on the first chunk (dozens of inference steps):
        # pay for that here, not on the first capture frame.
        if isinstance(getattr(self._features, "new_audio_samples", None), int):
            self._features.new_audio_samples = min(self._features.new_audio_samples, _PRIME_SAMPLES)
        self._step_engine(np.zeros(STEP_SAMPLES, np.int16))
        self._run = 0

    def _step_engine(self, pcm16k: np.ndarray) -> tuple[str, float] | None:
        hit = None
        for embedding in self._features.process_streaming(pcm16k.tobytes()):
            for score in self._ww.process_streaming(embedding):
                if score > self.threshold:
                    self._run += 1
                    if self._run >= self.trigger_level and hit is None:
                        hit = (self.model, score)
                        self._run = 0
                else:
                    self._run = 0
        return hit

    def _reset_engine(self) -> None:
        self._features.reset()
        self._ww.reset()
        self._prime()

    def _close_engine(self) -> None:
        self._features.close()
        self._ww.close()
        tflite.free_delegates(self._ww.lib, self._delegates)
