"""Picovoice Porcupine: built-in keywords or .ppn files, 512-sample 16 kHz frames, an online-checked key."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from agent.secrets import redact
from agent.wake.detector import ENGINE_RATE, WakeDetector, WakeEngineError

log = logging.getLogger(__name__)

# What each of Porcupine's start-up errors means for the user (class name -> plain words).
_REASONS = {
    "PorcupineActivationError": "its AccessKey could not be activated (no internet, or the key is wrong)",
    "PorcupineActivationLimitError": "its AccessKey has reached its device activation limit",
    "PorcupineActivationThrottledError": "Picovoice is throttling activations of its AccessKey; it retries "
                                         "at the next start",
    "PorcupineActivationRefusedError": "Picovoice refused its AccessKey",
    "PorcupineInvalidArgumentError": "it rejected its AccessKey or a keyword file",
    "PorcupineIOError": "it could not read its model or a keyword file",
    "PorcupineKeyError": "it rejected its AccessKey",
}


_PREFIX = re.compile(r"^[0-9a-f]+ [0-9A-F]+: ")  # '5fe5c79 00000190: ' before each line
_NOISE = re.compile(r"^([0-9a-f]+|Picovoice Error\.?)$")


def _details(e: Exception, access_key: str) -> str:
    """Porcupine's own message lines, without their codes, with the key blanked out."""
    lines = getattr(e, "message_stack", None) or [str(e)]
    kept = [_PREFIX.sub("", line).strip().rstrip(".") for line in lines]
    return redact("; ".join(t for t in kept if t and not _NOISE.match(t)), access_key)


def keyword_name(keyword: str) -> str:
    """The name a keyword is reported by: the built-in name, or the .ppn file's stem."""
    return Path(keyword).stem if keyword.endswith(".ppn") else keyword


class PorcupineDetector(WakeDetector):
    """Porcupine; `create` is pvporcupine.create (replaceable: its native library needs an online key)."""

    engine = "porcupine"

    def __init__(self, access_key: str, keywords: Sequence[str], *, sensitivities: Sequence[float] = (),
                 refractory_s: float = 2.0, create: Callable | None = None):
        if not keywords:
            raise WakeEngineError("porcupine has no keyword to listen for (wake.porcupine.keywords is empty)")
        if create is None:
            try:
                import pvporcupine
            except ImportError as e:
                raise WakeEngineError(f"pvporcupine cannot be loaded ({e}); install it with "
                                      f"pip install 'mira-agent[porcupine]'") from None
            create = pvporcupine.create
            unknown = [k for k in keywords if not k.endswith(".ppn") and k not in pvporcupine.KEYWORDS]
            if unknown:
                raise WakeEngineError(f"porcupine has no built-in keyword {unknown[0]!r} (it has: "
                                      f"{', '.join(sorted(pvporcupine.KEYWORDS))}); fix "
                                      f"wake.porcupine.keywords or give a .ppn file")
        self.keywords = [keyword_name(k) for k in keywords]
        ppn = [k for k in keywords if k.endswith(".ppn")]
        if ppn and len(ppn) != len(keywords):
            raise WakeEngineError("wake.porcupine.keywords mixes built-in names and .ppn files; use one kind")
        for path in ppn:
            if not Path(path).is_file():
                raise WakeEngineError(f"porcupine keyword file {path} does not exist")
        sens = list(sensitivities) or [0.5] * len(keywords)
        try:
            if ppn:
                self._engine = create(access_key=access_key, keyword_paths=list(ppn), sensitivities=sens)
            else:
                self._engine = create(access_key=access_key, keywords=list(keywords), sensitivities=sens)
        except ValueError as e:  # an unknown built-in keyword, mismatched sensitivities
            raise WakeEngineError(f"porcupine could not start ({str(e).rstrip('.')})") from None
        except Exception as e:  # pvporcupine.PorcupineError and its subclasses
            reason = _REASONS.get(type(e).__name__, "it failed to start")
            detail = _details(e, access_key)
            raise WakeEngineError(f"porcupine could not start: {reason}"
                                  + (f" ({detail})" if detail else "")) from None
        if self._engine.sample_rate != ENGINE_RATE:
            self._engine.delete()
            raise WakeEngineError(f"porcupine wants {self._engine.sample_rate} Hz audio; only "
                                  f"{ENGINE_RATE} Hz is supported")
        super().__init__(step_samples=self._engine.frame_length, refractory_s=refractory_s)

    @property
    def name(self) -> str:
        return f"porcupine {', '.join(self.keywords)}"

    def _step_engine(self, pcm16k: np.ndarray) -> tuple[str, float] | None:
        index = self._engine.process(pcm16k.tolist())
        return (self.keywords[index], 1.0) if index >= 0 else None

    def _reset_engine(self) -> None:
        pass  # Porcupine keeps no history worth forgetting beyond its current frame

    def _close_engine(self) -> None:
        self._engine.delete()
