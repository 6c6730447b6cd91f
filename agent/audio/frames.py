"""Cutting a stream of chunks of any length into exact 20 ms frames."""

from __future__ import annotations

import numpy as np

from agent.audio.base import FRAME_SAMPLES


class Framer:
    """Push int16 chunks of any length; get back every whole frame they complete.

    Nothing is lost or reordered: a partial frame waits for the next push. Each frame
    returned is a fresh array the caller may keep (frames cut from one push share a
    single allocation).
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES):
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, not {frame_samples}")
        self.frame_samples = frame_samples
        self._partial = np.zeros(frame_samples, dtype=np.int16)
        self._fill = 0

    @property
    def pending(self) -> int:
        """Samples waiting for the rest of their frame."""
        return self._fill

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Add samples; return the frames now complete (maybe none), oldest first."""
        chunk = np.asarray(chunk, dtype=np.int16).reshape(-1)
        size, frames, start = self.frame_samples, [], 0
        if self._fill:
            start = min(len(chunk), size - self._fill)
            self._partial[self._fill:self._fill + start] = chunk[:start]
            self._fill += start
            if self._fill < size:
                return frames
            frames.append(self._partial.copy())
            self._fill = 0
        whole = (len(chunk) - start) // size
        if whole:
            block = chunk[start:start + whole * size].copy().reshape(whole, size)
            frames.extend(block)
            start += whole * size
        rest = len(chunk) - start
        self._partial[:rest] = chunk[start:]
        self._fill = rest
        return frames

    def flush(self) -> np.ndarray | None:
        """The partial frame padded with silence to a whole one, or None when there is none."""
        if not self._fill:
            return None
        frame = self._partial.copy()
        frame[self._fill:] = 0
        self._fill = 0
        return frame

    def reset(self) -> None:
        """Drop the partial frame."""
        self._fill = 0
