"""An energy voice-activity detector with the server_vad knobs: threshold, padding, silence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_MS = 10
MIN_SPEECH_MS = 30       # voiced time needed to start a turn: a click is not speech
FLOOR_DB = -60.0         # threshold 0 -> anything above -60 dBFS is speech
CEILING_DB = -10.0       # threshold 1 -> only very loud audio is speech


def threshold_db(threshold: float) -> float:
    """The level (dBFS, RMS over 10 ms) that counts as speech for a server_vad threshold 0..1."""
    return FLOOR_DB + (CEILING_DB - FLOOR_DB) * min(1.0, max(0.0, threshold))


@dataclass(frozen=True)
class VadEvent:
    """speech started or stopped, at an absolute sample index of the session's input audio."""

    kind: str            # "started" or "stopped"
    sample: int          # started: first sample of the turn (padding included); stopped: end (exclusive)


class EnergyVad:
    """Feed samples in order; get started/stopped events at sample positions.

    A turn starts after MIN_SPEECH_MS of windows louder than the threshold, reported
    prefix_padding_ms before its first loud window (never before `floor`, the start of the
    uncommitted buffer). It stops once silence_duration_ms of quiet windows have passed; the end
    includes that silence, as the real service reports it.
    """

    def __init__(self, rate: int, threshold: float = 0.5, prefix_padding_ms: int = 300,
                 silence_duration_ms: int = 500, start: int = 0):
        self.rate = rate
        self.window = rate * WINDOW_MS // 1000
        self.level = 32768.0 * 10 ** (threshold_db(threshold) / 20)
        self.padding = rate * prefix_padding_ms // 1000
        self.silence_windows = max(1, -(-silence_duration_ms // WINDOW_MS))
        self.min_windows = MIN_SPEECH_MS // WINDOW_MS
        self.position = start          # absolute index of the next sample to arrive
        self.floor = start             # turns never start before this sample
        self.in_speech = False
        self._carry = np.zeros(0, dtype=np.int16)
        self._voiced_run = 0
        self._quiet_run = 0
        self._first_voiced = 0

    def reset(self, floor: int) -> None:
        """Forget any turn in progress; turns start at or after `floor` (after a commit or clear)."""
        self.floor = floor
        self.in_speech = False
        self._voiced_run = self._quiet_run = 0

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        samples = np.concatenate([self._carry, pcm]) if len(self._carry) else pcm
        whole = len(samples) // self.window * self.window
        self._carry = samples[whole:].copy()
        if not whole:
            return []
        frames = samples[:whole].astype(np.float32).reshape(-1, self.window)
        loud = np.sqrt(np.mean(frames * frames, axis=1)) > self.level
        events = []
        base = self.position - len(samples) + len(pcm)   # absolute index of samples[0]
        for i, voiced in enumerate(loud):
            at = base + i * self.window
            if not self.in_speech:
                if voiced:
                    if self._voiced_run == 0:
                        self._first_voiced = at
                    self._voiced_run += 1
                    if self._voiced_run >= self.min_windows:
                        self.in_speech = True
                        self._quiet_run = 0
                        start = max(self.floor, self._first_voiced - self.padding)
                        events.append(VadEvent("started", start))
                else:
                    self._voiced_run = 0
            elif voiced:
                self._quiet_run = 0
            else:
                self._quiet_run += 1
                if self._quiet_run >= self.silence_windows:
                    end = at + self.window
                    events.append(VadEvent("stopped", end))
                    self.reset(end)
        self.position += len(pcm)
        return events
