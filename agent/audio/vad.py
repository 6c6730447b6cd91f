"""Voice activity on the echo-cancelled microphone: when does the user start talking over a reply?

Pure numpy on 24 kHz 20 ms frames. A frame is sound when it is loud enough (the configured
dBFS threshold), clearly above the tracked noise floor and above the level echo may reach
(the canceller's gate); voiced when it is also periodic at a pitch (a vowel; an "s" is sound
but not voiced; noise of any colour never is). Speech starts when sound adds up to the
configured duration, a quarter of it voiced, with no gap longer than a hangover (syllables
have short quiet spells), and with a level that swings like syllables do: steady noise that
switches on (a fan, a tap, a hum) holds a flat level and is never speech.
"""

from __future__ import annotations

import numpy as np

from agent.audio.base import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

FULL_SCALE = 32768.0
FLOOR_MARGIN_DB = 10.0   # a voice frame is this far above the noise floor
FLOOR_RISE_DB_S = 3.0    # the floor follows a louder room this fast (it drops at once)
PERIODICITY = 0.45       # a voiced frame's pitch peak; noise of any colour stays near 0.2
MIN_SWING_DB = 6.0       # level range within the run: syllables, not a steady noise
HANGOVER_MS = 100        # a gap longer than this ends a run of voice frames
LOOKBACK_FRAMES = 2      # frames before the first loud frame handed over (soft onsets)
VOICED_SHARE = 0.25      # of the speech needed, at least this much must be voiced
QUIET, SOUND, VOICED = 0, 1, 2


class VoiceActivity:
    """Speech-start detector: process() each frame; it says when speech has started.

    threshold_db: the least frame level (dBFS, RMS) that can be voice; min_speech_ms: voice
    that must accumulate before speech counts as started.
    """

    def __init__(self, threshold_db: float = -35.0, min_speech_ms: int = 150, *,
                 hangover_ms: int = HANGOVER_MS, floor_margin_db: float = FLOOR_MARGIN_DB,
                 min_swing_db: float = MIN_SWING_DB):
        self.threshold_db = float(threshold_db)
        self.min_speech_ms = int(min_speech_ms)
        self.hangover_ms = int(hangover_ms)
        self.floor_margin_db = float(floor_margin_db)
        self.min_swing_db = float(min_swing_db)
        self._work = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._diff = np.zeros(FRAME_SAMPLES, dtype=np.float32)  # [0] stays 0
        self._lags = np.arange(SAMPLE_RATE // 400, SAMPLE_RATE // 67 + 1)
        self._unbias = FRAME_SAMPLES / (FRAME_SAMPLES - self._lags)  # fewer products at long lags
        self.level_db = -120.0
        """Level of the last frame, dBFS."""
        self.floor_db: float | None = None
        """The tracked noise floor, dBFS (None until the first frame)."""
        self.reset()

    @classmethod
    def from_settings(cls, settings) -> "VoiceActivity":
        """From [echo] (EchoSettings): barge_in_threshold_db and barge_in_ms."""
        return cls(settings.barge_in_threshold_db, settings.barge_in_ms)

    def configure(self, settings) -> None:
        """Take new thresholds from [echo] (a reloaded config); what was heard is forgotten."""
        self.threshold_db = float(settings.barge_in_threshold_db)
        self.min_speech_ms = int(settings.barge_in_ms)
        self.reset()

    def reset(self) -> None:
        """Forget everything heard (the stream had a gap, or a new reply starts)."""
        self.floor_db = None
        self._sound_ms = 0     # loud frames in the current run
        self._voiced_ms = 0    # of which voiced (periodic) frames
        self._gap_ms = 0
        self._run_frames = 0   # frames since the run's first loud frame
        self._run_min = self._run_max = 0.0
        self._fired = False    # this run already counted as speech

    def classify(self, frame: np.ndarray, gate_db: float = -np.inf) -> int:
        """QUIET (or the room's steady noise, or maybe echo: under gate_db), SOUND (loud,
        above the noise floor and the gate) or VOICED (that, and periodic like a vowel).
        Tracks the noise floor."""
        n = len(frame)
        if n != FRAME_SAMPLES:
            raise ValueError(f"VoiceActivity takes {FRAME_SAMPLES}-sample frames, not {n}")
        x = self._work
        np.multiply(frame, 1.0 / FULL_SCALE, out=x, casting="unsafe")
        level = 10.0 * np.log10(float(np.dot(x, x)) / n + 1e-12)
        self.level_db = level
        floor = self.floor_db
        if floor is None or level < floor:
            self.floor_db = level
        else:
            self.floor_db = floor + FLOOR_RISE_DB_S * FRAME_MS / 1000
        if level < self.threshold_db or floor is None or level < floor + self.floor_margin_db \
                or level < gate_db:
            return QUIET
        return VOICED if self.periodicity(x) >= PERIODICITY else SOUND

    def periodicity(self, x: np.ndarray) -> float:
        """Normalised autocorrelation peak at pitch lags (67-400 Hz) of the pre-emphasised
        frame: ~0.2 for any noise, 0.5-1 for a vowel."""
        d = self._diff
        np.subtract(x[1:], x[:-1], out=d[1:])
        d[1:] -= d[1:].mean()
        spectrum = np.fft.rfft(d, 2 * FRAME_SAMPLES)
        ac = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2)
        if ac[0] <= 0:
            return 0.0
        return float(np.max(ac[self._lags] * self._unbias) / ac[0])

    def process(self, frame: np.ndarray, gate_db: float = -np.inf) -> int | None:
        """Feed one frame; gate_db: level under which it may be echo (EchoCanceller.gate_db).
        When speech has just started, the samples since its onset (plus LOOKBACK_FRAMES
        before it); else None. It fires once per run of speech."""
        kind = self.classify(frame, gate_db)
        level = self.level_db
        if self._run_frames:
            self._run_frames += 1
        if kind:
            if not self._run_frames:
                self._run_frames = 1
                self._run_min = self._run_max = level
            self._run_min, self._run_max = min(self._run_min, level), max(self._run_max, level)
            self._sound_ms += FRAME_MS
            self._voiced_ms += FRAME_MS if kind == VOICED else 0
            self._gap_ms = 0
        elif self._run_frames:
            self._gap_ms += FRAME_MS
            if self._gap_ms > self.hangover_ms:
                self._sound_ms = self._voiced_ms = self._run_frames = self._gap_ms = 0
                self._fired = False
            else:  # a quiet spell inside the run counts toward the swing, as between syllables
                self._run_min = min(self._run_min, level)
        if self._fired or self._sound_ms < self.min_speech_ms \
                or self._voiced_ms < VOICED_SHARE * self.min_speech_ms:
            return None
        if self._run_max - self._run_min < self.min_swing_db:
            return None  # flat: a noise that switched on, not a voice
        self._fired = True
        return (self._run_frames + LOOKBACK_FRAMES) * FRAME_SAMPLES
