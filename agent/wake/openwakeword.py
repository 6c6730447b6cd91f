"""openWakeWord through pyopen-wakeword: offline, bundled models, 80 ms steps at 16 kHz."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.wake import tflite
from agent.wake.detector import WakeDetector, WakeEngineError
from agent.wake.gate import VoiceGate, load_vad
from agent.wake.verifier import Verifier, file_digest
from agent.wake.settings import OPENWAKEWORD_MODELS

log = logging.getLogger(__name__)

BUILTIN_MODELS = OPENWAKEWORD_MODELS
STEP_SAMPLES = 1280  # 80 ms at 16 kHz: one melspectrogram window, one embedding, one score
# Silence the library pre-fills after a reset: it fills 8 s, but its windows (76 mel frames per
# embedding, 16 embeddings per score) span about 2 s, so 3 s gives the same state in 40 % of the time.
_PRIME_SAMPLES = 38 * 1280  # about 3 s, whole 80 ms steps: the same step phase as the 8 s fill
_MEL_SHAPE = (1, 1760)
_EMB_SHAPE = (1, 76, 32, 1)
# Steps of audio behind one embedding: 76 mel frames at 8 a step span 10 steps, and each step's
# mel frames are computed on the step before it and the first 480 samples of its own.
_FEATURE_CONTEXT_STEPS = 10


def _check_model_file(path: Path) -> None:
    # A file that is not a TFLite flatbuffer crashes the C library: check its identifier first.
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise WakeEngineError(f"cannot read wake-word model {path} ({e.strerror})") from None
    if head[4:8] != b"TFL3":
        raise WakeEngineError(f"wake-word model {path} is not a TFLite (.tflite) model")


def model_name(model: str | Path) -> str:
    """The name a model is reported by: the built-in name, or the .tflite file's stem."""
    return str(model) if str(model) in BUILTIN_MODELS else Path(model).stem


class _Word:
    """One wake-word model on the shared features: its threshold and its run of windows over it."""

    def __init__(self, model: str | Path, threshold: float, classes) -> None:
        Model, OpenWakeWord = classes
        if str(model) in BUILTIN_MODELS:
            self.ww = OpenWakeWord.from_builtin(Model(str(model)))
        else:
            path = Path(model)
            _check_model_file(path)
            self.ww = OpenWakeWord.from_model(path)
        self.name = model_name(model)
        self.threshold = threshold
        self.run = 0

    @property
    def digest(self) -> str:
        """Which model file this is (verifier.file_digest of it)."""
        return file_digest(self.ww.tflite_model)

    def window(self) -> np.ndarray:
        """The embeddings the model scored last (input_windows x 96): what a verifier looks at."""
        return self.ww.embeddings[-self.ww.input_windows:]


class OpenWakeWordDetector(WakeDetector):
    """openWakeWord: fires when `trigger_level` consecutive 80 ms windows score over a threshold.

    `model` is one model (a built-in name or a .tflite path) or several, each a model or a
    (model, threshold) pair; a model without its own threshold uses `threshold`. The models share
    one feature front end (melspectrogram and embedding, about 90 % of the cost), so a second
    wake word costs only its small classifier. vad_gate puts agent.wake.gate in front of the
    models; a `verifier` (agent.wake.verifier.Verifier) is asked when its model fires.
    """

    engine = "openwakeword"

    def __init__(self, model: str | Path | Sequence = "hey_jarvis", *, threshold: float = 0.5,
                 trigger_level: int = 1, refractory_s: float = 2.0, vad_gate: bool = False,
                 verifier=None):
        try:
            from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
        except ImportError as e:  # no wheel for this platform (e.g. armv7l) or not installed
            raise WakeEngineError(f"pyopen-wakeword cannot be loaded ({e}); "
                                  f"install it with pip install 'mira-agent[wake]'") from None
        wanted = [model] if isinstance(model, (str, Path)) else list(model)
        if not wanted:
            raise WakeEngineError("no wake-word model to listen for (wake.models is empty)")
        pairs = [m if isinstance(m, tuple) else (m, threshold) for m in wanted]
        self.trigger_level = trigger_level
        self._delegates: list[int] = []
        self._words: list[_Word] = []
        self._features = None
        try:
            for m, t in pairs:
                self._words.append(_Word(m, t, (Model, OpenWakeWord)))
            self._features = OpenWakeWordFeatures.from_builtin()
        except BaseException:
            self._close_engine()
            raise
        self.models = [w.name for w in self._words]
        """The names of the models listened for, in the configured order."""
        self.model = self.models[0]
        self.threshold = self._words[0].threshold
        self.verifier: Verifier | None = None
        """The owner's voice verifier in use (use_verifier), asked when a model fires."""
        context = _FEATURE_CONTEXT_STEPS + max(w.ww.input_windows for w in self._words)
        gate = None
        if vad_gate:
            vad = load_vad()
            if vad is None:
                log.warning("wake.vad_gate is on but webrtcvad is not installed (pip install "
                            "'mira-agent[wake]'): the wake model runs on every frame")
            else:
                gate = VoiceGate(vad, step_samples=STEP_SAMPLES, context_steps=context)
        super().__init__(step_samples=STEP_SAMPLES, refractory_s=refractory_s, gate=gate)
        fast = [tflite.speed_up(self._features, ("mel_model", "mel_interpreter", "mel_input_tensor",
                                                 "mel_output_tensor"), _MEL_SHAPE, self._delegates),
                tflite.speed_up(self._features, ("emb_model", "emb_interpreter", "emb_input_tensor",
                                                 "emb_output_tensor"), _EMB_SHAPE, self._delegates)]
        fast += [tflite.speed_up(w.ww, ("model", "interpreter", "input_tensor", "output_tensor"),
                                 None, self._delegates) for w in self._words]
        if not all(fast):
            log.debug("openwakeword runs on TFLite's default interpreters (slower)")
        self._prime()
        self._primed = self._engine_state()
        if verifier is not None:
            self.use_verifier(verifier)

    def use_verifier(self, verifier: Verifier | None) -> None:
        """Ask `verifier` whenever a model fires (None: stop); a WakeEngineError if it was made
        for other model files, and then the detector keeps what it had."""
        if verifier is not None:
            verifier.check_fits(self.digests, self.features_digest)
        with self._lock:
            self.verifier = verifier

    @property
    def digests(self) -> dict[str, str]:
        """Which model file each model is (verifier.file_digest), by name."""
        return {w.name: w.digest for w in self._words}

    @property
    def features_digest(self) -> str:
        """Which embedding model the shared front end runs (verifier.file_digest)."""
        return file_digest(self._features.emb_path)

    def window(self, model: str) -> np.ndarray:
        """A copy of the embeddings `model` scored last (window_steps x 96): what its verifier judges."""
        return next(w.window().copy() for w in self._words if w.name == model)

    def window_steps(self, model: str) -> int:
        """How many embeddings (80 ms steps) the model scores at once."""
        return next(w.ww.input_windows for w in self._words if w.name == model)

    def analyse(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (steps x models, in self.models order) and embeddings (steps x 96) of a 24 kHz
        clip heard from a fresh start, for enrollment and wake-test; nothing fires. Use a detector
        that is not listening: its stream is left where the clip ended."""
        self.reset()
        with self._lock:
            pcm = self._new_resampler().resample_chunk(np.asarray(audio, np.float32), last=True)
            pcm = np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)
            scores, embeddings = [], []
            for i in range(0, len(pcm) - STEP_SAMPLES + 1, STEP_SAMPLES):
                for emb in self._features.process_streaming(pcm[i:i + STEP_SAMPLES].tobytes()):
                    embeddings.append(emb[0, 0, 0].copy())
                    scores.append([max(w.ww.process_streaming(emb), default=0.0) for w in self._words])
        return (np.array(scores, np.float32).reshape(-1, len(self._words)),
                np.array(embeddings, np.float32).reshape(-1, 96))

    @property
    def name(self) -> str:
        return f"openwakeword {', '.join(self.models)}"

    def _prime(self) -> None:
        # The library fills its history with silence on the first chunk (dozens of inference steps):
        # pay for that here, not on the first capture frame.
        if isinstance(getattr(self._features, "new_audio_samples", None), int):
            self._features.new_audio_samples = min(self._features.new_audio_samples, _PRIME_SAMPLES)
        self._step_engine(np.zeros(STEP_SAMPLES, np.int16))
        for word in self._words:
            word.run = 0

    def _engine_state(self) -> tuple:
        """A copy of everything the models remember (their interpreters keep nothing between
        calls): the feature front end's audio and mel buffers, and each word's embeddings."""
        f = self._features
        return ((f.audio.copy(), f.new_audio_samples, f.mels.copy(), f.new_mels),
                [(w.ww.embeddings.copy(), w.ww.new_embeddings) for w in self._words])

    def _step_engine(self, pcm16k: np.ndarray) -> tuple[str, float] | None:
        hit = None
        for embedding in self._features.process_streaming(pcm16k.tobytes()):
            for word in self._words:
                for score in word.ww.process_streaming(embedding):
                    if score <= word.threshold:
                        word.run = 0
                        continue
                    word.run += 1
                    if word.run >= self.trigger_level:
                        word.run = 0
                        if hit is None or score > hit[1]:
                            hit = (word.name, score)
        return hit

    def _confirm(self, name: str) -> bool:
        # the verifier runs only when a model fires outside the refractory period: the idle
        # cost does not grow with it
        verifier = self.verifier
        if verifier is None:
            return True
        return verifier.accepts(name, next(w for w in self._words if w.name == name).window())

    def _reset_engine(self) -> None:
        # The state the prime left at open, copied back: the same state bit for bit, without its
        # 38 steps of inference (about 90 ms of CPU here, half a second on a loaded machine, on
        # the conversation thread at the first frame after every gap in what the detector heard).
        (audio, new_audio, mels, new_mels), words = self._primed
        f = self._features
        f.audio[:], f.new_audio_samples, f.mels[:], f.new_mels = audio, new_audio, mels, new_mels
        for word, (embeddings, new_embeddings) in zip(self._words, words):
            word.ww.embeddings[:], word.ww.new_embeddings = embeddings, new_embeddings
            word.run = 0

    def _close_engine(self) -> None:
        if self._features is not None:
            self._features.close()
        for word in self._words:
            word.ww.close()
        if self._delegates:
            tflite.free_delegates(self._words[0].ww.lib, self._delegates)
