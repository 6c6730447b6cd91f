"""What every microphone and speaker offers, whatever the hardware behind it.

All audio crossing these interfaces is mono int16 at 24 kHz (the realtime service's
pcm16 rate), in numpy arrays; a microphone delivers exact 20 ms frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

SAMPLE_RATE = 24000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 480 samples, 960 bytes of pcm16

FrameCallback = Callable[[np.ndarray], None]


class Microphone(ABC):
    """A source of 20 ms frames, delivered on the source's own thread."""

    @abstractmethod
    def start(self, on_frame: FrameCallback, on_end: Callable[[], None] | None = None) -> None:
        """Begin capture; on_frame gets each frame (never blocks), on_end when the input ends."""

    @abstractmethod
    def stop(self) -> None:
        """Stop capture; safe to call twice."""

    def close(self) -> None:
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Speaker(ABC):
    """A sink that plays queued audio at once and knows what has really been played."""

    @abstractmethod
    def play(self, pcm: np.ndarray, item_id: str | None = None) -> None:
        """Queue audio (24 kHz int16) of an item; playback starts with the first call."""

    @abstractmethod
    def flush(self) -> dict[str, int]:
        """Silence now, drop what is queued; samples (24 kHz) played so far per item."""

    @abstractmethod
    def played_samples(self, item_id: str) -> int:
        """Samples (24 kHz) of the item that have left the speaker."""

    @abstractmethod
    def drained(self) -> bool:
        """True when nothing queued is left to play."""

    @abstractmethod
    def close(self) -> None:
        """Stop and release the device; safe to call twice."""

    @property
    def volume(self) -> int:
        """Playback volume, 0-100 %."""
        return 100

    @volume.setter
    def volume(self, percent: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no volume control")

    @property
    def reference(self):
        """A ReferenceRing of what was really played (the echo canceller's far end), or None."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
