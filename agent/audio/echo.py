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
"""

from __future__ import annotations

import logging

import numpy as np
import soxr

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.playout import ReferenceRing

log = logging.getLogger(__name__)

APM_RATE = 48000
APM_FRAME = APM_RATE // 100  # WebRTC takes 10 ms frames
MAX_LEAD_S = 1.0  # played audio waiting for its microphone frames beyond which we start over


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

    `gate_db` is the level the residual must pass to be the user's voice and not echo: -inf
    while nothing has played for LENGTH_S; else the microphone's level minus what the model
    removes, plus MARGIN_DB. An untrained model removes nothing, so nothing passes; as it
    learns, quieter users pass, down to NEAR_UNDER_MIC_DB under the microphone's level (a
    user that much quieter than the echo cannot interrupt by voice).
    """

    LENGTH_S = 0.3          # echo path covered: bulk delay plus the room's tail
    STEP = 1.0              # NLMS step of the adapting copy
    MARGIN_DB = 8.0         # the residual's lead over the echo the model leaves behind
    NEAR_UNDER_MIC_DB = 12.0
    FAR_ACTIVE_DB = -60.0   # played audio quieter than this leaves no echo worth the name

    def __init__(self, block: int = FRAME_SAMPLES):
        n, bins = block, block + 1
        self.block = n
        self.parts = int(np.ceil(self.LENGTH_S * SAMPLE_RATE / n))
        self._x = np.zeros((self.parts, bins), dtype=np.complex128)   # far spectra, newest first
        self._x_power = np.zeros((self.parts, bins))
        self._adapting = np.zeros((self.parts, bins), dtype=np.complex128)
        self._output = np.zeros((self.parts, bins), dtype=np.complex128)
        self._far_levels = np.full(self.parts, -120.0)
        self._window = np.zeros(2 * n)   # [previous far block, this far block]
        self._err = np.zeros(2 * n)      # [zeros, error]: the gradient's overlap-save input
        self._head = 0                   # ring index of the newest partition
        self._constrain = 0
        self._e_adapting = self._e_output = 1e-9  # smoothed error energies of the two copies
        self.residual = np.zeros(n, dtype=np.float32)
        """The last block minus the echo estimate (the user's voice, if any)."""
        self.echo_db = -120.0
        """Level of the last block's echo estimate, dBFS."""
        self.mic_db = -120.0
        """Level of the last microphone block, dBFS."""
        self.erle_db = 0.0
        """Echo the output copy removes, dB, tracked while the speaker plays."""
        self.copies = 0
        """Times the output copy took the adapting copy's weights."""

    @property
    def far_active(self) -> bool:
        return bool(self._far_levels.max() > self.FAR_ACTIVE_DB)

    @property
    def trusted(self) -> bool:
        """The model removes enough that a user NEAR_UNDER_MIC_DB under the echo is heard."""
        return self.erle_db >= self.NEAR_UNDER_MIC_DB + self.MARGIN_DB

    @property
    def gate_db(self) -> float:
        if not self.far_active:
            return -np.inf
        return self.mic_db - min(self.erle_db - self.MARGIN_DB, self.NEAR_UNDER_MIC_DB)

    def forget_alignment(self) -> None:
        """The far end slipped against the microphone: the model is no longer trusted."""
        self.erle_db = min(self.erle_db, 0.0)

    def process(self, far: np.ndarray, near: np.ndarray) -> None:
        """One block of what was played and what the microphone heard (int16 scale)."""
        n = self.block
        near = np.asarray(near, dtype=np.float64)
        head = self._head = (self._head - 1) % self.parts
        self._window[:n] = self._window[n:]
        self._window[n:] = far
        self._far_levels[head] = _db(far)
        near_db = self.mic_db = _db(near)
        if not self.far_active:  # nothing played lately: no echo, nothing to learn
            self._x[head] = 0
            self._x_power[head] = 0
            self.residual[:] = near
            self.echo_db = -120.0
            return
        spectrum = self._x[head] = np.fft.rfft(self._window)
        self._x_power[head] = spectrum.real ** 2 + spectrum.imag ** 2
        order = (np.arange(self.parts) + head) % self.parts  # newest first
        x = self._x[order]  # weights are kept by lag, newest first
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
        # how much the model removes: a low percentile (down 5x faster than up), learnt on
        # blocks where the user is not heard (where they are, only very slowly)
        residual_db = _db(e_out)
        achieved = near_db - residual_db
        rate = 0.1 if achieved < self.erle_db else 0.02
        if residual_db >= self.gate_db:
            rate *= 0.1
        self.erle_db += rate * (achieved - self.erle_db)


def _db(x: np.ndarray) -> float:
    """Level in dBFS of int16-scale samples."""
    return 10.0 * float(np.log10(float(np.dot(x, x)) / (len(x) * 32768.0 ** 2) + 1e-12))


class EchoCanceller:
    """Removes the speaker's echo (and steady noise) from 24 kHz 20 ms microphone frames.

    reference: what the speaker really played (PlayoutBuffer.reference). delay_ms: a hint
    passed to WebRTC (its AEC3 estimates the true lag itself). Runs on one thread (the
    conversation's); process() never blocks and never logs. Beside WebRTC's output it keeps
    a LinearEcho model of the path, whose `residual` and `gate_db` tell the voice detector
    whether the user is talking over a reply.
    """

    def __init__(self, reference: ReferenceRing, *, delay_ms: int = 40,
                 noise_suppression: bool = True):
        from livekit import rtc

        self._ref = reference
        self.delay_ms = int(delay_ms)
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True,
                                              noise_suppression=noise_suppression,
                                              high_pass_filter=True, auto_gain_control=False)
        self._apm.set_stream_delay_ms(self.delay_ms)  # a hint, kept by WebRTC; AEC3 measures
        self._far_bytes, self._near_bytes = bytearray(2 * APM_FRAME), bytearray(2 * APM_FRAME)
        self._far_frame = rtc.AudioFrame(self._far_bytes, APM_RATE, 1, APM_FRAME)
        self._near_frame = rtc.AudioFrame(self._near_bytes, APM_RATE, 1, APM_FRAME)
        self._far_pcm = np.frombuffer(self._far_bytes, dtype=np.int16)
        self._near_pcm = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._scratch = np.zeros(APM_FRAME, dtype=np.float32)
        stream = lambda a, b: soxr.ResampleStream(a, b, 1, dtype="float32", quality="HQ",  # noqa: E731
                                                  vr=True)  # steady chunks, ~2 ms delay
        self._far_up = stream(SAMPLE_RATE, APM_RATE)
        self._near_up = stream(SAMPLE_RATE, APM_RATE)
        self._down = stream(APM_RATE, SAMPLE_RATE)
        self._far = _Fifo(16 * APM_FRAME)
        self._near = _Fifo(16 * APM_FRAME)
        self._out = _Fifo(16 * FRAME_SAMPLES)
        self._clean48 = np.zeros(8 * APM_FRAME, dtype=np.float32)
        self._ref_chunk = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._model = LinearEcho()
        self._fifo = _Fifo(int(MAX_LEAD_S * SAMPLE_RATE) + 2 * FRAME_SAMPLES)
        self._far_block = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._residual = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._closed = False
        self.frames = 0
        """Microphone frames processed."""
        self.far_samples = 0
        """Reference samples (24 kHz) fed as the far end."""
        self.slips = 0
        """Times the far end and the microphone fell out of step (the speaker late, or the
        microphone over MAX_LEAD_S behind); each costs the linear model its trust."""
        # The ring holds whatever played before we existed: start from what plays next.
        backlog = reference.available
        if backlog:
            reference.read(backlog)

    @property
    def residual(self) -> np.ndarray:
        """The last frame minus the linear echo estimate (int16): the user at full level."""
        return self._residual

    @property
    def gate_db(self) -> float:
        """Level (dBFS) the residual must pass to be the user and not echo (LinearEcho.gate_db)."""
        return self._model.gate_db

    @property
    def model(self) -> LinearEcho:
        return self._model

    def process(self, frame: np.ndarray) -> np.ndarray:
        """The frame (24 kHz int16, 480 samples) with the echo removed: a new array."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"EchoCanceller takes {FRAME_SAMPLES}-sample frames, not {len(frame)}")
        if self._closed:
            return np.array(frame, dtype=np.int16)
        far = self._next_far_block()
        self._feed_far(far)
        self._step_model(far, frame)
        self._near.push(self._near_up.resample_chunk(frame.astype(np.float32)))
        clean, done = self._clean48, 0
        while self._near.size >= APM_FRAME and done + APM_FRAME <= len(clean):
            _into_int16(self._near.buf[:APM_FRAME], self._near_pcm, self._scratch)
            self._near.pop(APM_FRAME)
            self._apm.process_stream(self._near_frame)
            clean[done:done + APM_FRAME] = self._near_pcm
            done += APM_FRAME
        self._out.push(self._down.resample_chunk(clean[:done]))
        n = FRAME_SAMPLES
        result = np.zeros(n, dtype=np.int16)
        have = min(self._out.size, n)  # short only at the start: the resamplers' delay
        tail = self._out.buf[:have]
        np.clip(np.rint(tail), -32768, 32767, out=tail)
        result[n - have:] = tail
        self._out.pop(have)
        self.frames += 1
        return result

    def _next_far_block(self) -> np.ndarray:
        """The next 20 ms of what was played: exactly one block per microphone frame, so the
        far end keeps its alignment with the microphone however the two threads jitter or
        stall. The queue between them starts empty and grows by a block each time it runs
        dry (the speaker was late), so it settles at the smallest cushion that works."""
        ref, fifo, n, far = self._ref, self._fifo, FRAME_SAMPLES, self._far_block
        while fifo.size + n <= len(fifo.buf):
            chunk = ref.read(n)
            if chunk is None:
                break
            self._ref_chunk[:] = chunk
            fifo.push(self._ref_chunk)
        if fifo.size > MAX_LEAD_S * SAMPLE_RATE:  # the microphone fell far behind: start over
            self.slips += 1
            self._model.forget_alignment()
            while ref.read(n) is not None:
                pass
            fifo.pop(fifo.size)
        if fifo.size < n:  # the speaker is behind: silence now, its block later
            far[:] = 0
            self.slips += self.frames > 0  # (the first frame always finds the queue empty)
            self._model.forget_alignment()
        else:
            far[:] = fifo.buf[:n]
            fifo.pop(n)
            self.far_samples += n
        return far

    def _feed_far(self, far: np.ndarray) -> None:
        self._far.push(self._far_up.resample_chunk(far))
        while self._far.size >= APM_FRAME:
            _into_int16(self._far.buf[:APM_FRAME], self._far_pcm, self._scratch)
            self._far.pop(APM_FRAME)
            self._apm.process_reverse_stream(self._far_frame)

    def _step_model(self, far: np.ndarray, frame: np.ndarray) -> None:
        self._model.process(far, frame)
        np.clip(np.rint(self._model.residual), -32768, 32767, out=self._model.residual)
        self._residual[:] = self._model.residual

    def close(self) -> None:
        """Release WebRTC's state; later frames pass through unchanged. Safe to call twice."""
        if not self._closed:
            self._closed = True
            handle = getattr(self._apm, "_ffi_handle", None)
            if handle is not None:
                handle.dispose()
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
    try:
        canceller = EchoCanceller(reference, delay_ms=settings.delay_ms)
    except ImportError as e:
        log.warning("echo cancellation is off: the livekit package cannot be loaded (%s); "
                    "install it (pip install livekit) or set [echo] enabled = false; only the "
                    "button and the wake word interrupt a reply", e)
        return None
    log.info("echo cancellation on (WebRTC AEC3 at %d kHz, noise suppression, high-pass); "
             "voice barge-in %s", APM_RATE // 1000, "on" if settings.barge_in else "off")
    return canceller
