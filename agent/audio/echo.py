"""Echo cancelling: WebRTC's audio processing (AEC3, noise suppression, high-pass filter).

The far end is what really left for the speaker: the playout buffer's ReferenceRing, written
by the device thread block by block (silence included). Each microphone frame takes the next
20 ms of it, then the frame itself is processed: one block each, so their alignment holds
through jitter and stalls. The ring is written when the device takes a block, before it is
heard, so the far end leads its echo (by the output latency plus the capture path, 40 ms on
a PulseAudio null sink): AEC3's own delay estimator finds the lag (it measured 20-400 ms
fine; 0 ms or less fails).

WebRTC cancels far deeper at 48 kHz than at 24 kHz (53 dB against 25 dB on one synthetic
path), so both streams go up 2x and the result down 2x through soxr's steady variable-rate
engine; a few ms of start-up delay are covered once with silence, then every 20 ms frame in
gives one out. WebRTC's output is what the daemon uses (wake word, sending); its suppressor
also swallows the user while the echo is louder, so voice barge-in listens to LinearEcho's
residual instead. Buffers are preallocated; per frame only numpy's and soxr's temporaries.

It works only while there is something to cancel: while the speaker plays and for HOLD_S
after (the echo's delay and tail). Otherwise (a device waiting for its wake word) each frame
only takes its far block, to keep the pairing, and comes out as it went in, delayed by the
same few ms the processing adds, so nothing is lost or repeated when processing stops or
starts again. WebRTC and the linear model keep what they learnt across the gap: the far end
and the microphone pause together, so the echo's delay is the same when the next reply starts.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import soxr

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.playout import ReferenceRing

log = logging.getLogger(__name__)

APM_RATE = 48000
APM_FRAME = APM_RATE // 100  # WebRTC takes 10 ms frames
MAX_LEAD_S = 1.0  # played audio waiting for its microphone frames beyond which we start over
CUSHION = 2       # blocks kept waiting (one for this frame, one for jitter)
TRIM_FRAMES = 50  # frames (1 s) over which a surplus must persist to be trimmed
HOLD_S = 0.6      # after the last audible far block, its echo may still come (delay + tail)


class _Fifo:
    """A preallocated float32 queue of samples."""

    def __init__(self, capacity: int):
        self.buf = np.zeros(capacity, dtype=np.float32)
        self.size = 0

    def push(self, x: np.ndarray) -> None:
        n = len(x)
        if self.size + n > len(self.buf):  # cannot happen in steady state; keep the newest
            keep = max(0, len(self.buf) - n)
            self.buf[:keep] = self.buf[self.size - keep:self.size]
            self.size = keep
            x = x[-len(self.buf):]
            n = len(x)
        self.buf[self.size:self.size + n] = x
        self.size += n

    def pop(self, n: int) -> None:
        self.size -= n
        self.buf[:self.size] = self.buf[n:n + self.size]


def _into_int16(src: np.ndarray, dst: np.ndarray, scratch: np.ndarray) -> None:
    np.rint(src, out=scratch)
    np.clip(scratch, -32768, 32767, out=scratch)
    dst[:] = scratch


class LinearEcho:
    """A linear model of the speaker-to-microphone path, to tell the user's voice from echo.

    WebRTC's suppressor removes the user along with the echo while a reply plays: near-end
    speech 6 dB under the echo lost 20-50 dB, so a detector on its output hears an
    interruption only in the reply's pauses. This filter only subtracts its estimate of the
    echo, so the user stays in its residual at full level, and says how far to trust it:

    - a partitioned-block frequency-domain adaptive filter (overlap-save, 20 ms blocks,
      LENGTH_S long, gradient constrained one partition per block as speex's MDF does);
    - two copies: one adapts on every block, the other (whose residual is the output) only
      takes its weights when they do clearly better, so double talk cannot wreck it;
    - `erle_db`, how much echo the output copy removes, tracked while the speaker plays
      (a low percentile of it: it follows a drop fast and a gain slowly).

    `gate_db` is the level the residual must pass to be the user's voice and not echo: +inf
    after a realignment until the model is trusted again; -inf while nothing has played for
    LENGTH_S; else the microphone's level minus what the model
    removes, plus MARGIN_DB. An untrained model removes nothing, so nothing passes; as it
    learns, quieter users pass, down to NEAR_UNDER_MIC_DB under the microphone's level (a
    user that much quieter than the echo cannot interrupt by voice).

    When the echo path jumps (the device dropped or inserted audio: an underrun), the model
    no longer removes the echo, which then looks like a user talking. The two differ in what
    the microphone loses: the user's voice comes on top of an echo the model still removes
    (the microphone is clearly louder than the residual), a jumped path leaves no less than
    it found; and a user louder than the echo is heard by WebRTC too (`heard_db`), whose own
    delay tracking keeps a jump's echo out. Frames over the gate score that; while the score
    says "jump", the gate is shut (+inf) and the model learns it removes less.
    """

    LENGTH_S = 0.3          # echo path covered: bulk delay plus the room's tail
    STEP = 1.0              # NLMS step of the adapting copy
    MARGIN_DB = 8.0         # the residual's lead over the echo the model leaves behind
    HEARD_DB = 10.0         # WebRTC's output within this of the residual: it heard it too
    JUMP_SCORE_DB = 0.0     # a score under this (dB the microphone loses) means a jump
    NEAR_UNDER_MIC_DB = 12.0
    FAR_ACTIVE_DB = -60.0   # played audio quieter than this leaves no echo worth the name
    ERLE_SNR_DB = 15.0      # a block teaches erle_db only this far above the room's noise
    FLOOR_RISE_DB = 0.06    # per block (3 dB/s): the floor follows a louder room slowly
    FIT_SLACK_DB = 3.0      # a realignment's fit, less this, is what the model removes

    def __init__(self, block: int = FRAME_SAMPLES):
        n, bins = block, block + 1
        self.block = n
        self.parts = self.path_samples(n) // n
        # all by lag, newest first: far spectra, their powers and levels, the two copies
        self._x = np.zeros((self.parts, bins), dtype=np.complex128)
        self._x_power = np.zeros((self.parts, bins))
        self._far_levels = np.full(self.parts, -120.0)
        self._adapting = np.zeros((self.parts, bins), dtype=np.complex128)
        self._output = np.zeros((self.parts, bins), dtype=np.complex128)
        self._window = np.zeros(2 * n)   # [previous far block, this far block]
        self._err = np.zeros(2 * n)      # [zeros, error]: the gradient's overlap-save input
        self._constrain = 0
        self._unknown = False            # this block had no far end: no telling echo apart
        self._doubt = False              # the residual over the gate looks like a jumped path
        self._score = 3.0                # smoothed dB lost by the microphone over the gate
        self._calm = 0                   # blocks since the last one over the gate
        self._e_adapting = self._e_output = 1e-9  # smoothed error energies of the two copies
        self._probation = False          # realigned: shut until trusted again
        self.residual = np.zeros(n, dtype=np.float32)
        """The last block minus the echo estimate (the user's voice, if any)."""
        self.echo_db = -120.0
        """Level of the last block's echo estimate, dBFS."""
        self.mic_db = -120.0
        """Level of the last microphone block, dBFS."""
        self.erle_db = 0.0
        """Echo the output copy removes, dB, tracked while the speaker plays."""
        self.floor_db = 0.0
        """The room's noise at the microphone, dBFS (the quietest recent block)."""
        self.copies = 0
        """Times the output copy took the adapting copy's weights."""
        self.learnt = False
        """The model was trusted once: it holds a path worth finding again after a restart."""

    @classmethod
    def path_samples(cls, block: int = FRAME_SAMPLES) -> int:
        """Samples of the path a model of `block`-sample blocks learns (LENGTH_S, whole blocks)."""
        return block * int(np.ceil(cls.LENGTH_S * SAMPLE_RATE / block))

    @property
    def far_active(self) -> bool:
        """Something audible was played within the model's length (so echo may be coming)."""
        return bool(self._far_levels.max() > self.FAR_ACTIVE_DB)

    @property
    def trusted(self) -> bool:
        """The model removes enough that a user NEAR_UNDER_MIC_DB under the echo is heard."""
        return self.erle_db >= self.NEAR_UNDER_MIC_DB + self.MARGIN_DB

    @property
    def gate_db(self) -> float:
        """The level (dBFS) the last residual had to pass to be the user (see the class)."""
        if self._probation:  # (even in a pause: the echo may come before its far end)
            return np.inf
        if not self.far_active:
            return -np.inf
        if self._unknown or self._doubt:
            return np.inf
        return self._level_gate()

    def _level_gate(self) -> float:
        return self.mic_db - min(self.erle_db - self.MARGIN_DB, self.NEAR_UNDER_MIC_DB)

    def reset(self) -> None:
        """Forget the path (the far end jumped by an unknown amount)."""
        for a in (self._x, self._x_power, self._adapting, self._output, self._window):
            a[:] = 0
        self._far_levels[:] = -120.0
        self.erle_db = 0.0
        self.learnt = False

    def impulse(self) -> np.ndarray:
        """The path the output copy has learnt, as a time-domain impulse response."""
        return self._impulse_of(self._output)

    def _impulse_of(self, weights: np.ndarray) -> np.ndarray:
        n = self.block
        return np.concatenate([np.fft.irfft(part)[:n] for part in weights])

    def watch(self, far: np.ndarray, near: np.ndarray) -> None:
        """A block played and heard, learnt from in no way (its path is being looked for):
        the far end goes into the history, the residual is the microphone itself."""
        self._push_far(far)
        self.residual[:] = near
        self.mic_db = _db(np.asarray(near, dtype=np.float64))
        self._track_floor(self.mic_db)
        self.echo_db = -120.0

    def _track_floor(self, near_db: float) -> None:
        """The floor drops to a quieter block at once and rises FLOOR_RISE_DB a block."""
        self.floor_db = min(near_db, self.floor_db + self.FLOOR_RISE_DB)

    def shift_path(self, samples: float, fit_db: float = 0.0) -> None:
        """The echo now comes `samples` later (earlier if negative): the learnt path moves
        by as much, in both copies, and the path is trusted again once it shows it fits:
        fit_db, what the path so shifted was seen to remove (less FIT_SLACK_DB: the best
        scale of a window is a little kinder than the model's own), counts as shown."""
        self.erle_db = max(self.erle_db, min(fit_db - self.FIT_SLACK_DB, 40.0))
        if self.trusted:
            self._probation = False
        for w in (self._adapting, self._output):
            self._set_path(w, _delayed(self._impulse_of(w), samples))

    def load_path(self, impulse: np.ndarray) -> None:
        """A path learnt before (the daemon's last run, in the same box): both copies take it
        and it counts as learnt, so the next restart looks for where its echo now sits."""
        expected = self.path_samples(self.block)
        if len(impulse) != expected:
            raise ValueError(f"a path of {len(impulse)} samples, not {expected}")
        for w in (self._adapting, self._output):
            self._set_path(w, np.asarray(impulse, dtype=np.float64))
        self.learnt = True

    def _set_path(self, weights: np.ndarray, h: np.ndarray) -> None:
        n = self.block
        for k in range(self.parts):
            weights[k] = np.fft.rfft(np.r_[h[k * n:(k + 1) * n], np.zeros(n)])

    def forget_far(self) -> None:
        """What was played before no longer lines up with the microphone: forget it."""
        for a in (self._x, self._x_power, self._window):
            a[:] = 0
        self._far_levels[:] = -120.0

    def realign(self) -> None:
        """The far end ran again after a stop, its echo a little earlier or later than before:
        what it played before is forgotten, and the gate stays shut until the model is
        trusted again (erle_db from 0): a model that removed a lot at the old lag may remove
        little at the new one, now and then, frame by frame, which is how echo would pass a
        graded gate. The weights are kept (the room is the same) and adapt to the new lag.
        A model never trusted has nothing to doubt: its gate is graded from the first block
        played (it opens only as far as the model shows it removes the echo)."""
        self.forget_far()
        self.erle_db = 0.0
        self._probation = True
        self._score, self._calm, self._doubt = 3.0, 0, False
        self._e_adapting = self._e_output = 1e-9

    def far_only(self, far: np.ndarray) -> None:
        """A played block with no microphone frame of its own (the far end was trimmed):
        the frames after it pair with far blocks one later, so the echo sits one lag later.
        (The path turns round rather than falling off an end: jitter moves the pairing both
        ways, a late block and a trim a moment apart, and each move back must find the path
        it left; one that fell off was lost: in the daemon, a path learnt whole was a tail
        after a few late blocks at a restart.)"""
        self._push_far(far)
        for w in (self._adapting, self._output):
            w[:] = np.roll(w, 1, axis=0)

    def no_far(self, near: np.ndarray) -> None:
        """A microphone frame with no played block yet (the speaker was late): the frames
        after it pair with far blocks one earlier, so the echo sits one lag earlier (the
        path turns round: see far_only)."""
        for w in (self._adapting, self._output):
            w[:] = np.roll(w, -1, axis=0)
        self.residual[:] = near
        self.mic_db = _db(np.asarray(near, dtype=np.float64))
        self.echo_db = -120.0
        self._unknown = True

    def _push_far(self, far: np.ndarray) -> None:
        n = self.block
        self._window[:n] = self._window[n:]
        self._window[n:] = far
        for a in (self._x, self._x_power, self._far_levels):
            a[1:] = a[:-1]
        self._far_levels[0] = _db(self._window[n:])
        if self.far_active:
            spectrum = self._x[0] = np.fft.rfft(self._window)
            self._x_power[0] = spectrum.real ** 2 + spectrum.imag ** 2
        else:
            self._x[0] = 0
            self._x_power[0] = 0

    def process(self, far: np.ndarray, near: np.ndarray, heard_db: float = -120.0) -> None:
        """One block of what was played and what the microphone heard (int16 scale);
        heard_db: the level WebRTC's canceller left of the same block."""
        n = self.block
        near = np.asarray(near, dtype=np.float64)
        self._unknown = self._doubt = False
        self._push_far(far)
        if self._probation and not self.learnt and self.far_active:
            self._probation = False  # nothing learnt to doubt: graded, it opens as it learns
        near_db = self.mic_db = _db(near)
        self._track_floor(near_db)
        if not self.far_active:  # nothing played lately: no echo, nothing to learn
            self.residual[:] = near
            self.echo_db = -120.0
            return
        x = self._x
        y_out = np.fft.irfft((self._output * x).sum(axis=0))[n:]
        y_adapt = np.fft.irfft((self._adapting * x).sum(axis=0))[n:]
        e_out, e_adapt = near - y_out, near - y_adapt
        # adapt: normalised per bin by the far power across the filter's span
        self._err[n:] = e_adapt
        grad = np.fft.rfft(self._err)
        norm = self._x_power.sum(axis=0)
        norm += 0.01 * norm.mean() + 1e3 * n
        self._adapting += self.STEP * np.conj(x) * (grad / norm)
        k = self._constrain = (self._constrain + 1) % self.parts
        w = np.fft.irfft(self._adapting[k])
        w[n:] = 0
        self._adapting[k] = np.fft.rfft(w)
        # the output copy takes weights that do clearly better; a diverged copy starts over
        self._e_adapting = 0.7 * self._e_adapting + 0.3 * float(np.dot(e_adapt, e_adapt))
        self._e_output = 0.7 * self._e_output + 0.3 * float(np.dot(e_out, e_out))
        if self._e_adapting < 0.5 * self._e_output:
            self._output[:] = self._adapting
            self._e_output = self._e_adapting
            e_out, y_out = e_adapt, y_adapt
            self.copies += 1
        elif self._e_adapting > 8 * self._e_output:
            self._adapting[:] = self._output
        self.residual[:] = e_out
        self.echo_db = _db(y_out)
        residual_db = _db(e_out)
        achieved = near_db - residual_db
        user = False
        if residual_db >= self._level_gate():  # the user, or the echo of a jumped path?
            heard = heard_db >= residual_db - self.HEARD_DB
            score = self.HEARD_DB if heard else achieved
            self._score = score if self._calm > 10 else 0.7 * self._score + 0.3 * score
            self._calm = 0
            self._doubt = self._score < self.JUMP_SCORE_DB
            user = not self._doubt
        else:
            self._calm += 1
            if self._calm > 10:
                self._score = 3.0
        # how much the model removes: a low percentile (down 5x faster than up), learnt on
        # blocks with echo to remove well above the room's noise (not the quiet ends of a
        # reply's pauses: there the noise, which no model removes, would make a perfect model
        # look useless) where the user is not heard (where they are, only very slowly)
        if near_db > max(self.FAR_ACTIVE_DB, self.floor_db + self.ERLE_SNR_DB):
            # echo removed, the room's noise (in both, removed by no model) taken out of each
            noise = 2.0 * 10 ** (self.floor_db / 10)  # the quietest block, +3 dB: its mean
            removed = _power_db(near_db, noise) - _power_db(residual_db, noise, floor=near_db - 60)
            # (after a realignment the model either fits again or not: trust follows quickly)
            rate = 0.1 if removed < self.erle_db or self._probation else 0.02
            if user:
                rate *= 0.1
            self.erle_db += rate * (min(max(removed, -10.0), 60.0) - self.erle_db)
            if self.trusted:
                self._probation, self.learnt = False, True


def _delayed(x: np.ndarray, samples: float) -> np.ndarray:
    """x delayed by samples (advanced if negative), zeros shifted in; a fraction of a sample by
    a phase ramp (zero-padded: nothing wraps round)."""
    whole = int(round(samples))
    if samples == whole:
        out = np.zeros(len(x))
        if whole >= 0:
            out[whole:] = x[:len(x) - whole]
        else:
            out[:len(x) + whole] = x[-whole:]
        return out
    size = 1 << int(np.ceil(np.log2(2 * len(x) + abs(whole) + 1)))
    ramp = np.exp(-2j * np.pi * np.arange(size // 2 + 1) * samples / size)
    return np.fft.irfft(np.fft.rfft(x, size) * ramp, size)[:len(x)]


def _removed_db(near: np.ndarray, estimate: np.ndarray) -> float:
    """dB of near that the estimate, scaled at best (least squares), takes away."""
    power = float(np.dot(estimate, estimate))
    if power <= 0.0:
        return 0.0
    left = near - float(np.dot(near, estimate)) / power * estimate
    return 10.0 * float(np.log10(float(np.dot(near, near)) / max(float(np.dot(left, left)), 1e-9)))


def _power_db(level_db: float, noise: float, floor: float = -120.0) -> float:
    """A level (dBFS) with a noise power taken out (full scale 1), no lower than floor."""
    return max(10.0 * float(np.log10(max(10 ** (level_db / 10) - noise, 1e-12))), floor)


def _db(x: np.ndarray) -> float:
    """Level in dBFS of int16-scale samples."""
    return 10.0 * float(np.log10(float(np.dot(x, x)) / (len(x) * 32768.0 ** 2) + 1e-12))


# a far block's energy (int16 scale, summed) above which it is audible: LinearEcho's threshold
_FAR_ACTIVE_ENERGY = FRAME_SAMPLES * 32768.0 ** 2 * 10 ** (LinearEcho.FAR_ACTIVE_DB / 10)


def _stream(in_rate: int, out_rate: int) -> soxr.ResampleStream:
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ",
                               vr=True)  # steady chunks, ~2 ms delay


_DELAYS: dict[bool, int] = {}


def _pipeline_delay(noise_suppression: bool) -> int:
    """Samples by which the canceller's output lags its input: what the resamplers hold back
    from their first frame plus WebRTC's own delay (its band split, its noise suppressor's
    look-ahead), which grows once it has a far end. Measured once per setting: noise through
    the same chain on a throwaway module fed a silent far end, output against input."""
    if noise_suppression not in _DELAYS:
        from livekit import rtc

        up, down = _stream(SAMPLE_RATE, APM_RATE), _stream(APM_RATE, SAMPLE_RATE)
        apm = rtc.AudioProcessingModule(echo_cancellation=True,
                                        noise_suppression=noise_suppression,
                                        high_pass_filter=True, auto_gain_control=False)
        data = bytearray(2 * APM_FRAME)
        frame, pcm = rtc.AudioFrame(data, APM_RATE, 1, APM_FRAME), np.frombuffer(data, np.int16)
        quiet = rtc.AudioFrame(bytearray(2 * APM_FRAME), APM_RATE, 1, APM_FRAME)
        x = np.random.default_rng(0).integers(-3000, 3000, 50 * FRAME_SAMPLES)
        held, outs = np.zeros(0, dtype=np.float32), []
        for i in range(0, len(x), FRAME_SAMPLES):
            held = np.concatenate((held, up.resample_chunk(x[i:i + FRAME_SAMPLES]
                                                           .astype(np.float32))))
            whole = len(held) // APM_FRAME * APM_FRAME
            for j in range(0, whole, APM_FRAME):
                apm.process_reverse_stream(quiet)  # a far end, silent (WebRTC delays with one)
                pcm[:] = np.rint(held[j:j + APM_FRAME])
                apm.process_stream(frame)
                held[j:j + APM_FRAME] = pcm
            outs.append(down.resample_chunk(held[:whole]))
            held = held[whole:]
        y = np.concatenate(outs)
        y = np.concatenate((np.zeros(len(x) - len(y)), y))  # the start, padded as process() does
        half = len(x) // 2  # past the suppressor's first estimate
        size = 1 << int(np.ceil(np.log2(2 * len(x))))
        corr = np.fft.irfft(np.fft.rfft(y[half:], size)
                            * np.conj(np.fft.rfft(x[half:].astype(np.float64), size)), size)
        _DELAYS[noise_suppression] = int(np.argmax(corr[:4 * FRAME_SAMPLES]))
    return _DELAYS[noise_suppression]


class Realigner:
    """Where the echo sits after the speaker's stream ran again, against the old pairing.

    A restarted stream is paired with the microphone to within 100 ms (the sound server
    buffers each start its own way), while both models knew the path to the sample. This
    collects the far blocks paired and the microphone frames after the restart; once FIND_S
    of audible far end (and the echo's delay after it) went by (EARLY_S, for a shift that
    fits as well as a trusted model removes: the gate then opens at once), it predicts the
    echo with the path the linear model learnt and finds, by GCC-PHAT, the shifts (within
    MAX_SHIFT_S, then to a quarter sample: FRACTIONS) at which the microphone best matches the
    prediction; the one whose shifted prediction, scaled at best, removes the most of the
    microphone (at least FITS_DB) is the shift:
    added to the pairing, it gives both models their old path back. The test is what a
    peak's height could not tell: a path that no longer fits (a changed room, a path pushed
    out of the model) explains nothing at any shift and the search ends at once, so that the
    model learns from then on (it does not while the search goes on); a user talking over
    the start explains some: the next window is tried, until GIVE_UP_S of audible far end.
    """

    FIND_S = 0.6
    EARLY_S = 0.3        # a first try, taken only if the path fits as well as a trusted one
    EARLY_FITS_DB = LinearEcho.NEAR_UNDER_MIC_DB + LinearEcho.MARGIN_DB + 3.0
    AFTER_S = 0.25       # echo still arriving after the last far block used
    GIVE_UP_S = 2.5
    MAX_SHIFT_S = 0.2    # (a null sink's restarts moved it by up to 99 ms)
    CANDIDATES = 4       # peaks of the correlation tried (a speech's pitch gives neighbours)
    FITS_DB = 3.0        # the echo the shifted path must explain (right shifts: 33-61 dB; a
                         # path whose direct sound was lost, 3.4)
    FITS_NOTHING_DB = 0.5  # under this at every peak the path explains nothing: learn anew
    # The sound server runs at 48 kHz and the canceller at 24: a restart moves the echo by whole
    # 48 kHz samples, half a sample here as often as not, and a path off by half a sample explains
    # only ~16 dB of speech (a quarter, ~22; the right fraction, all of it): the best whole shift
    # is tried a quarter and a half sample either way, and one taken if it explains clearly more.
    FRACTIONS = (-0.5, -0.25, 0.25, 0.5)
    FRACTION_GAIN_DB = 1.0

    def __init__(self, impulse: Callable[[], np.ndarray], block: int = FRAME_SAMPLES):
        self._impulse = impulse  # the path as learnt when the window closes (it follows moves)
        self._block = block
        self._far: list[np.ndarray] = []
        self._near: list[np.ndarray] = []
        self._audible = 0        # audible far blocks collected
        self._since = 0          # blocks since the FIND_S-th audible one
        self._since_early = 0    # blocks since the EARLY_S-th audible one
        self._spent = 0          # audible far blocks seen in all tries
        self.shift: float | None = None
        """Samples to add to the pairing (positive: the echo now comes later; maybe a fraction)."""
        self.fit_db = 0.0
        """How much of the microphone the path, shifted so, explains (dB removed)."""
        self.explains_nothing = False
        """The last window found the path explaining nothing at any shift (it no longer fits)."""
        self.done = False

    def add(self, far: np.ndarray | None, near: np.ndarray, audible: bool) -> None:
        """One paired block and its microphone frame; None: the pairing moved (a block was
        late, or a surplus was trimmed), so what was collected no longer lines up."""
        if self.done:
            return
        if far is None:  # the pairing moved under the window: start it again
            self._start_again()
            return
        if not self._far and not audible:
            return  # the window starts with the far end
        self._far.append(np.asarray(far, dtype=np.float64).copy())
        self._near.append(np.asarray(near, dtype=np.float64).copy())
        self._audible += audible
        self._spent += audible
        blocks = SAMPLE_RATE / self._block
        self._since += self._audible >= int(self.FIND_S * blocks)
        self._since_early += self._audible >= int(self.EARLY_S * blocks)
        after = int(self.AFTER_S * blocks)
        if self._since >= after:
            self._find()
        elif self._since_early == after:
            self._find_early()
        elif self._given_up:
            self.done = True

    @property
    def _given_up(self) -> bool:
        return self._spent >= self.GIVE_UP_S * SAMPLE_RATE / self._block

    def _start_again(self) -> None:
        self._far.clear()
        self._near.clear()
        self._audible = self._since = self._since_early = 0

    def _find_early(self) -> None:
        """The first EARLY_S: the shift is taken now only if it fits so well that the model is
        trusted at once (a clear echo: most restarts); else the window grows to FIND_S."""
        fit, shift = self._best()
        if fit >= self.EARLY_FITS_DB:
            self.shift, self.fit_db, self.done = shift, fit, True

    def _find(self) -> None:
        fit, shift = self._best()
        if fit >= self.FITS_DB:
            self.shift, self.fit_db, self.done = shift, fit, True
            return
        self._start_again()
        self.explains_nothing = fit < self.FITS_NOTHING_DB
        if self.explains_nothing or self._given_up:
            self.done = True

    def _best(self) -> tuple[float, float]:
        """(dB removed, shift) of the best-fitting shift of the window collected."""
        far, near, h = np.concatenate(self._far), np.concatenate(self._near), self._impulse()
        n = len(near)
        size = 1 << int(np.ceil(np.log2(n + len(h))))
        predicted = np.fft.irfft(np.fft.rfft(far, size) * np.fft.rfft(h, size), size)[:n]
        cross = np.fft.rfft(near, 2 * size) * np.conj(np.fft.rfft(predicted, 2 * size))
        cc = np.fft.irfft(cross / (np.abs(cross) + 1e-9), 2 * size)
        most = int(self.MAX_SHIFT_S * SAMPLE_RATE)
        lags = np.concatenate((cc[-most:], cc[:most + 1]))
        guard = SAMPLE_RATE // 1000
        fits = []
        for _ in range(self.CANDIDATES):  # the peaks of the correlation, each put to the test
            peak = int(np.argmax(lags))
            fits.append((_removed_db(near, _delayed(predicted, peak - most)), peak - most))
            lags[max(0, peak - guard):peak + guard + 1] = -np.inf
        fit, shift = max(fits)
        whole = shift
        for part in self.FRACTIONS:  # between two samples (see FRACTIONS)
            better = _removed_db(near, _delayed(predicted, whole + part))
            if better >= fit + self.FRACTION_GAIN_DB:
                fit, shift = better, whole + part
        return fit, shift


class EchoCanceller:
    """Removes the speaker's echo (and steady noise) from 24 kHz 20 ms microphone frames.

    reference: what the speaker really played (PlayoutBuffer.reference). delay_ms: a hint
    passed to WebRTC (its AEC3 estimates the true lag itself). Runs on one thread (the
    conversation's); process() never blocks and never logs. Beside WebRTC's output it keeps
    a LinearEcho model of the path, whose `residual` and `gate_db` tell the voice detector
    whether the user is talking over a reply.
    """

    def __init__(self, reference: ReferenceRing, *, delay_ms: int = 40,
                 noise_suppression: bool = True, path: np.ndarray | None = None,
                 on_learnt: Callable[[np.ndarray], None] | None = None):
        from livekit import rtc

        self._ref = reference
        self.delay_ms = int(delay_ms)
        self._noise_suppression = noise_suppression
        self._apm = self._new_module()
        self._far_bytes, self._near_bytes = bytearray(2 * APM_FRAME), bytearray(2 * APM_FRAME)
        self._far_frame = rtc.AudioFrame(self._far_bytes, APM_RATE, 1, APM_FRAME)
        self._near_frame = rtc.AudioFrame(self._near_bytes, APM_RATE, 1, APM_FRAME)
        self._far_pcm = np.frombuffer(self._far_bytes, dtype=np.int16)
        self._near_pcm = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._scratch = np.zeros(APM_FRAME, dtype=np.float32)
        self._far_up = _stream(SAMPLE_RATE, APM_RATE)
        self._near_up = _stream(SAMPLE_RATE, APM_RATE)
        self._down = _stream(APM_RATE, SAMPLE_RATE)
        self._far = _Fifo(16 * APM_FRAME)
        self._near = _Fifo(16 * APM_FRAME)
        self._out = _Fifo(16 * FRAME_SAMPLES)
        self._clean48 = np.zeros(8 * APM_FRAME, dtype=np.float32)
        self._ref_chunk = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._model = LinearEcho()
        if path is not None:
            self._model.load_path(path)
        self._on_learnt = on_learnt  # told the path each time it goes quiet with it trusted
                                     # (on this thread: it only hands the path on)
        self._fifo = _Fifo(int(MAX_LEAD_S * SAMPLE_RATE) + 2 * FRAME_SAMPLES)
        self._far_block = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._residual = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._closed = False
        self.delay = _pipeline_delay(noise_suppression)
        """Samples by which the output lags the microphone (resamplers and WebRTC)."""
        # the newest input, then this frame: the delay line while resting, the replay when
        # processing starts again
        self._history = -(-self.delay // FRAME_SAMPLES) * FRAME_SAMPLES
        self._line = np.zeros(self._history + FRAME_SAMPLES, dtype=np.int16)
        self._hold = int(HOLD_S * SAMPLE_RATE / FRAME_SAMPLES)
        self._quiet = self._hold + 1  # far blocks since the last audible one
        self._resting = True          # nothing to cancel: frames pass through (delayed)
        self.frames = 0
        """Microphone frames processed."""
        self.rested = 0
        """Of those, frames that passed with nothing to cancel (no processing)."""
        self.far_samples = 0
        """Reference samples (24 kHz) fed as the far end."""
        self.shifts = 0
        """Blocks by which the pairing of far end and microphone moved (a late speaker, a
        trimmed surplus); the models follow each."""
        self.restarts = 0
        """Times the microphone fell over MAX_LEAD_S behind (or the ring overran): the pairing
        starts over and the echo's path is looked for again, as after a restart."""
        self._least, self._watched = len(self._fifo.buf), 0  # fewest blocks waiting at a frame
        self._dropped = reference.dropped
        self._runs = reference.runs
        self._realigner: Realigner | None = None
        self.realigned_by: list[float] = []
        """Shifts (samples) by which the linear model's path moved at each restart."""
        self.realigns = 0
        """Times the speaker's stream ran again after a stop (a rest, a flush): the pairing,
        WebRTC and the linear model's trust started afresh."""

    @property
    def residual(self) -> np.ndarray:
        """The last frame minus the linear echo estimate (int16): the user at full level."""
        return self._residual

    @property
    def gate_db(self) -> float:
        """Level (dBFS) the residual must pass to be the user and not echo (LinearEcho.gate_db;
        +inf from a restart until the echo is found again and the model trusted)."""
        if self._realigner is not None:  # from the restart: its echo may come before its
            return np.inf                # far end is known, a gate open to all would take it
        return self._model.gate_db

    @property
    def active(self) -> bool:
        """Something was played within HOLD_S: the last frame was processed."""
        return not self._resting

    @property
    def model(self) -> LinearEcho:
        """The linear echo model (its erle_db, trusted, copies: for tests and benchmarks)."""
        return self._model

    def process(self, frame: np.ndarray) -> np.ndarray:
        """The frame (24 kHz int16, 480 samples) with the echo removed: a new array."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"EchoCanceller takes {FRAME_SAMPLES}-sample frames, not {len(frame)}")
        if self._closed:
            return np.array(frame, dtype=np.int16)
        shifts = self.shifts
        far = self._next_far_block()
        audible = far is not None and float(np.dot(far, far)) > _FAR_ACTIVE_ENERGY
        self._quiet = 0 if audible else self._quiet + 1
        finding = self._realigner is not None  # after a restart: the linear model only watches
        if finding:
            self._realigner.add(None if self.shifts != shifts else far, frame, audible)
            if self._realigner.done:
                self._realigned()
                finding = False
        if self._quiet > self._hold:
            return self._rest(frame, far)
        if self._resting:
            self._resume()
        if far is not None:
            self._feed_far(far)
        self._through_webrtc(frame)
        n = FRAME_SAMPLES
        result = np.zeros(n, dtype=np.int16)
        have = min(self._out.size, n)  # short only if soxr held back more than it should
        tail = self._out.buf[:have]
        np.clip(np.rint(tail), -32768, 32767, out=tail)
        result[n - have:] = tail
        self._out.pop(have)
        self._remember(frame)
        if far is None:
            self._model.no_far(frame)
        elif finding:
            self._model.watch(far, frame)
        else:
            self._model.process(far, frame, heard_db=_db(result.astype(np.float64)))
        residual = self._model.residual
        np.clip(np.rint(residual), -32768, 32767, out=residual)
        self._residual[:] = residual
        self.frames += 1
        return result

    def _through_webrtc(self, frame: np.ndarray) -> None:
        """The frame up to 48 kHz, through WebRTC in 10 ms frames, down into the output FIFO."""
        self._near.push(self._near_up.resample_chunk(frame.astype(np.float32)))
        clean, done = self._clean48, 0
        while self._near.size >= APM_FRAME and done + APM_FRAME <= len(clean):
            _into_int16(self._near.buf[:APM_FRAME], self._near_pcm, self._scratch)
            self._near.pop(APM_FRAME)
            self._apm.process_stream(self._near_frame)
            clean[done:done + APM_FRAME] = self._near_pcm
            done += APM_FRAME
        self._out.push(self._down.resample_chunk(clean[:done]))

    def _rest(self, frame: np.ndarray, far: np.ndarray | None) -> np.ndarray:
        """Nothing to cancel: the frame comes out unprocessed, as late as processing makes it."""
        if far is None:
            self._model.no_far(frame)  # the pairing moved: the model follows even now
        else:
            self._model.residual[:] = frame
        if not self._resting and self._on_learnt is not None and self._model.trusted:
            self._on_learnt(self._model.impulse())  # (a reply's end; must not block)
        self._resting = True
        self.rested += 1
        self.frames += 1
        line, h = self._line, self._history
        line[h:] = frame
        result = line[h - self.delay:h - self.delay + FRAME_SAMPLES].copy()
        line[:h] = line[FRAME_SAMPLES:]
        self._residual[:] = frame
        return result

    def _remember(self, frame: np.ndarray) -> None:
        line, h = self._line, self._history
        line[h:] = frame
        line[:h] = line[FRAME_SAMPLES:]

    def _resume(self) -> None:
        """Something plays again. The chain starts afresh on the newest input (what was
        heard over nothing played), output dropped: WebRTC and the resamplers then hold what
        they would hold had they run all along, so the output goes on with no sample lost or
        repeated."""
        for stream in (self._far_up, self._near_up, self._down):
            stream.clear()
        self._far.size = self._near.size = 0
        silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        for i in range(0, self._history, FRAME_SAMPLES):
            self._feed_far(silence)  # it was quiet: under the audible level
            self._through_webrtc(self._line[i:i + FRAME_SAMPLES])
        self._out.size = 0
        self._resting = False

    def _new_module(self):
        from livekit import rtc

        apm = rtc.AudioProcessingModule(echo_cancellation=True,
                                        noise_suppression=self._noise_suppression,
                                        high_pass_filter=True, auto_gain_control=False)
        apm.set_stream_delay_ms(self.delay_ms)  # a hint, kept by WebRTC; AEC3 measures
        return apm

    def _next_far_block(self) -> np.ndarray | None:
        """The next 20 ms of what was played, paired with this microphone frame; None when
        the speaker has not played it yet; silence while its stream is stopped.

        One block per frame keeps the pairing however the two threads jitter or stall. What
        waits between them is kept small, so the far end leads its echo by as much as it can:
        every frame starts with everything played so far; the first frame keeps only the
        newest block; and when more than CUSHION blocks waited at every frame for a second,
        the surplus is played to the models without a frame. A frame that finds nothing
        gets none (the speaker was late). Both models are told of each shift, so none costs
        what they have learnt. A stream that ran again after a stop, and a frame that finds
        over MAX_LEAD_S waiting (a stall) or the ring overrun, are paired afresh and the
        echo's path looked for again (`_realign`).
        """
        ref, fifo, n, far = self._ref, self._fifo, FRAME_SAMPLES, self._far_block
        while fifo.size + n <= len(fifo.buf):
            chunk = ref.read(n)
            if chunk is None:
                break
            self._ref_chunk[:] = chunk
            fifo.push(self._ref_chunk)
        if self.frames == 0:
            self._pair_with_newest()
        elif fifo.size + n > len(fifo.buf) or ref.dropped != self._dropped:
            self.restarts += 1
            self._realign()
        elif ref.runs != self._runs:
            self._realign()
        self._least = min(self._least, fifo.size // n)
        self._watched += 1
        if self._watched == TRIM_FRAMES:
            for _ in range(self._least - CUSHION):
                far[:] = fifo.buf[:n]
                fifo.pop(n)
                self._feed_far(far)
                self._model.far_only(far)
                self.shifts += 1
            self._least, self._watched = len(fifo.buf), 0
        if fifo.size < n:
            if ref.paused:  # the stream stopped: silence plays, the pairing is not late
                far[:] = 0
                return far
            self.shifts += 1
            return None
        far[:] = fifo.buf[:n]
        fifo.pop(n)
        self.far_samples += n
        return far

    def _pair_with_newest(self) -> None:
        """Pair this frame with the newest block played (the far end leads by the most)."""
        ref, fifo, n = self._ref, self._fifo, FRAME_SAMPLES
        while ref.read(n) is not None:  # (over MAX_LEAD_S behind: the ring still holds more)
            pass
        fifo.pop(max(0, fifo.size - n))
        self._dropped, self._runs = ref.dropped, ref.runs
        self._least, self._watched = len(fifo.buf), 0

    def _realign(self) -> None:
        """The speaker's stream ran again (after a rest or a flush's abort), or the pairing
        was lost: it starts over as at the first frame, with the newest block, which puts
        the echo within 100 ms of where the models knew it (the sound server buffers each
        start its own way; the Realigner searches +-200 ms). WebRTC starts cold (its delay
        estimate would hold on to the old lag: a cold start removes more echo in the first
        second); the linear model only watches, its gate shut from the first block of the
        next reply, until the Realigner has found by how much its path moved (see
        _realigned); a model never trusted yet has no path to find and learns at once (a
        Realigner looking for an empty path used the first 2.5 s of every reply, so short
        replies taught it nothing, ever)."""
        self._pair_with_newest()
        if self._model.learnt:  # (a path never learnt has nothing to find: it learns at once)
            self._realigner = Realigner(self._model.impulse)
        self._model.realign()
        old, self._apm = self._apm, self._new_module()
        self._dispose(old)
        self._resting = True  # the next processed frame primes the new module
        self.realigns += 1

    def _realigned(self) -> None:
        """The Realigner is done: its shift moves the path the linear model learnt to where
        the echo now is (the model is trusted again once it shows it fits); no shift found:
        the model learns the new path, its gate shut until it is trusted, from scratch if
        the old path explained nothing at any shift. WebRTC, started cold at the restart,
        finds the new path by itself (faster than one that holds on to the old one)."""
        finder, self._realigner = self._realigner, None
        if finder.shift is not None:
            self._model.shift_path(finder.shift, finder.fit_db)
            self.realigned_by.append(finder.shift)
        elif finder.explains_nothing:
            self._model.reset()

    @staticmethod
    def _dispose(apm) -> None:
        handle = getattr(apm, "_ffi_handle", None) if apm is not None else None
        if handle is not None:
            handle.dispose()

    def _feed_far(self, far: np.ndarray) -> None:
        self._far.push(self._far_up.resample_chunk(far))
        while self._far.size >= APM_FRAME:
            _into_int16(self._far.buf[:APM_FRAME], self._far_pcm, self._scratch)
            self._far.pop(APM_FRAME)
            self._apm.process_reverse_stream(self._far_frame)

    def close(self) -> None:
        """Release WebRTC's state; later frames pass through unchanged. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._dispose(self._apm)
            self._apm = None

    def __enter__(self) -> "EchoCanceller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_echo_canceller(settings, speaker) -> EchoCanceller | None:
    """The canceller [echo] asks for, or None (voice barge-in off) with one log line why.

    settings: EchoSettings; speaker: the Speaker whose `reference` is the far end.
    """
    if not settings.enabled:
        log.info("echo cancellation is off ([echo] enabled = false): only the button and the "
                 "wake word interrupt a reply")
        return None
    reference = getattr(speaker, "reference", None)
    if reference is None:
        log.info("echo cancellation is off: the speaker %s reports nothing it plays; only the "
                 "button and the wake word interrupt a reply", type(speaker).__name__)
        return None
    from agent.audio.echo_path import EchoPathStore

    store = EchoPathStore.from_environment(LinearEcho.path_samples())
    try:
        canceller = EchoCanceller(reference, delay_ms=settings.delay_ms, path=store.load(),
                                  on_learnt=store.save_soon)
    except ImportError as e:
        log.warning("echo cancellation is off: the livekit package cannot be loaded (%s); "
                    "install it (pip install livekit) or set [echo] enabled = false; only the "
                    "button and the wake word interrupt a reply", e)
        return None
    log.info("echo cancellation on (WebRTC AEC3 at %d kHz, noise suppression, high-pass); "
             "voice barge-in %s", APM_RATE // 1000, "on" if settings.barge_in else "off")
    return canceller
