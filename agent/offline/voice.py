"""The offline answers' voice: espeak-ng, or a Piper voice (.onnx) when piper-tts is installed."""

from __future__ import annotations

import logging
import wave
import io
from collections import OrderedDict
from pathlib import Path

import numpy as np

from agent.audio.base import SAMPLE_RATE
from agent.audio.resample import resample
from agent.errors import ConfigError
from agent.speech import espeak

log = logging.getLogger(__name__)

_CACHE_SIZE = 16  # the fixed sentences come back again and again


class Voice:
    """Text -> 24 kHz int16 speech, made on the device; a tone when no synthesiser works."""

    def __init__(self, voice: str = espeak.VOICE, wpm: int = espeak.WPM, base_dir: Path | None = None):
        self.name = voice
        self._wpm = wpm
        self._piper = None
        self._piper_path: Path | None = None
        if voice.endswith(".onnx"):
            path = Path(voice).expanduser()
            self._piper_path = path if path.is_absolute() or base_dir is None else base_dir / path
            if not self._piper_path.is_file():
                raise ConfigError(f"offline.voice: the Piper voice {self._piper_path} does not exist; "
                                  f"give the path of its .onnx file (its .onnx.json beside it), "
                                  f"or an espeak-ng voice such as en-us")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._warned = False

    def say(self, text: str) -> np.ndarray:
        """The sentence as speech; never raises (a failing synthesiser gives a tone and one warning)."""
        pcm = self._cache.get(text)
        if pcm is None:
            pcm = self._synthesise(text)
            self._cache[text] = pcm
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return pcm

    def _synthesise(self, text: str) -> np.ndarray:
        try:
            if self._piper_path is not None:
                return self._piper_say(text)
            return espeak.speak(text, voice=self.name, wpm=self._wpm, rate=SAMPLE_RATE)
        except (espeak.SpeechError, ImportError, OSError, RuntimeError) as e:
            if not self._warned:
                log.warning("offline answers cannot be spoken (%s); a tone stands in for them", e)
                self._warned = True
            return espeak.tone(text, SAMPLE_RATE)

    def _piper_say(self, text: str) -> np.ndarray:
        if self._piper is None:
            try:
                from piper import PiperVoice
            except ImportError:
                raise ImportError(f"offline.voice {self._piper_path.name} needs piper-tts "
                                  f"(pip install piper-tts)") from None
            self._piper = PiperVoice.load(str(self._piper_path))
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            self._piper.synthesize_wav(text, w) if hasattr(self._piper, "synthesize_wav") \
                else self._piper.synthesize(text, w)
        buf.seek(0)
        with wave.open(buf, "rb") as w:
            rate, data = w.getframerate(), w.readframes(w.getnframes())
        return resample(np.frombuffer(data, dtype="<i2"), rate, SAMPLE_RATE)
