"""The speaker: a sound card through PortAudio, fed from the playout buffer.

The output stream runs while there is something to play and REST_AFTER_S after (silence
when nothing is queued), then stops: a running stream wakes 50 times a second for nothing,
which is most of what an idle speaker costs. The next play() starts it again at once (a few
ms; the device then takes its first blocks in one go), so a reply still starts with its
first delta; the echo canceller, told by the reference ring that the stream ran again,
finds the echo path afresh. Only a device that really runs again at once is let rest: each
restart (a wake, a flush) is timed, and after one that took long the stream keeps running
(an idle PulseAudio null sink, with nothing reading its monitor, sleeps 2 s between renders:
a restarted stream plays its first blocks, then waits); the flush at open is not timed, as
the microphone may not be running yet. A sound server that swallows a restart's first
blocks (PulseAudio, see SwallowWatch) is given silence meanwhile. The PortAudio callback
reads one block from the playout buffer, telling it how far that block is from the speaker
(the device's DAC time, plus what waits in the resampler), which is what makes the per-item
played positions true. When the device rate is not 24 kHz, a soxr streaming resampler and a
small FIFO of device samples sit in between; both are preallocated or bounded.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np

from agent.audio.base import SAMPLE_RATE
from agent.audio.mixer import AlsaMixer
from agent.audio.playout import BufferedSpeaker, PlayoutBuffer
from agent.audio.resample import StreamResampler
from agent.audio.portaudio import HOST, KEEPER_POLL_S, PortAudioHost, StreamKeeper, find_device
from agent.audio.settings import AudioSettings
from agent.errors import AudioDeviceError

log = logging.getLogger(__name__)

FALLBACK_RATES = (48000, 44100, 24000, 16000)
REST_AFTER_S = 5.0  # nothing queued this long: the output stream stops until the next play()
RESTART_PROBE = 8   # callbacks after a restart that must come within a period each (a burst
                    # first), plus 0.1 s, for the device to count as restarting at once


class SwallowWatch:
    """Tells when the device swallows the blocks it takes instead of queueing them.

    Seen on PulseAudio (ALSA's pulse plugin) when a stream starts again after a rest: for
    0.1-0.4 s (in bouts, up to 1 s after the start) PortAudio calls back every millisecond or
    so, the device's delay stays at 0 however much is written, and none of it plays (1.6 s
    once, 7 s another time: the "end" earcon lost but for its first 40 ms, and the echo
    canceller, told that seconds had played, lost its path). A block was swallowed when the
    next call comes within half a block and the device's delay has not grown by at least half a
    block. Only the device's own delay figures can tell, and only on a device seen to play in
    real time (one whose delay held half a block: ALSA's file plugin calls back at once with a
    delay of 0, for ever), just after a restart (ARMED_S, or while it goes on, up to MOST_S of
    audio).
    """

    ARMED_S = 2.0
    MOST_S = 30.0

    def __init__(self):
        self._last: tuple[float, float, float] | None = None  # (time, delay, block seconds)
        self._until: float | None = None  # device time the watch ends (set at the first call)
        self._gone = 0.0                  # seconds swallowed since the restart
        self.paced = False
        """The device was seen to play in real time (its delay held half a block)."""
        self.armed = False
        """The stream of a paced device started again lately: swallowed blocks are looked for."""

    def restart(self) -> None:
        """The stream starts again: watch its first calls (on a device seen to be paced)."""
        self._last, self._until, self._gone, self.armed = None, None, 0.0, self.paced

    def reset(self) -> None:
        """No figures from the device: nothing to compare the next call with."""
        self._last = None

    def swallowed(self, now: float, delay: float, seconds: float) -> bool:
        """Whether the block handed at the last call was swallowed. now: the device clock at
        this call; delay: seconds until this call's block plays; seconds: its length."""
        last, self._last = self._last, (now, delay, seconds)
        if last is None:
            return False
        then, was, length = last
        elapsed = now - then
        gone = elapsed < length / 2 and delay < was + length / 2 - elapsed
        if not gone and delay >= length / 2:
            self.paced = True
        if not self.armed:
            return False
        if self._until is None:
            self._until = then + self.ARMED_S
        if gone:
            self._gone += length
            self.armed = self._gone <= self.MOST_S
            return self.armed
        self.armed = now < self._until
        return False


class PyAudioSpeaker(BufferedSpeaker):
    """The configured output device, open from construction until close().

    Volume goes to the hardware mixer control when one is configured (the software gain
    then stays at 100 %), else to the playout buffer's software gain.
    """

    def __init__(self, settings: AudioSettings, on_state: Callable[[bool, str], None] | None = None,
                 *, host: PortAudioHost = HOST, **keeper_options):
        import pyaudio
        self.settings = settings
        self._host = host
        self._continue = pyaudio.paContinue
        self._complete = pyaudio.paComplete
        self._underflow_flag = pyaudio.paOutputUnderflow
        self.buffer = PlayoutBuffer(latency=settings.period_ms / 1000)
        # PulseAudio drops the first ms a restarted stream plays (up to 10 ms measured idle, more
        # on a busy machine): two periods of silence go first
        self.buffer.wake_lead = 2 * SAMPLE_RATE * settings.period_ms // 1000
        self._volume = settings.volume
        self._mixer = None
        if settings.mixer_control:
            try:
                self._mixer = AlsaMixer(settings.mixer_control, settings.mixer_device)
            except AudioDeviceError as e:  # the volume is not worth a dead speaker
                log.warning("%s; using the software volume instead", e)
        self.set_volume(settings.volume)
        self.rate = 0
        """The device rate in use."""
        self.device_name = ""
        self.device_underflows = 0
        """Times the device ran dry (the callback was late), as PortAudio reports."""
        self._latency = 0.0
        self._resampler = None
        self._closed = False
        self._probe: list | None = None  # [restart time, callbacks since] while timing one
        self._swallow = SwallowWatch()
        self._swallowing = False
        self.swallowed = 0
        """Blocks the device took and dropped (a sound server's restart): silence was given
        instead of the queued audio, which waited."""
        self.restarts_at_once: bool | None = None
        """Whether the last restart of the stream ran at once (None: none timed yet); after
        one that did not, the stream no longer rests while idle."""
        keeper_options.setdefault("poll_s", KEEPER_POLL_S)
        self._keeper = StreamKeeper("speaker", self._open, on_state, host=host, **keeper_options)
        self._keeper.start()
        self._prime()

    # -- the Speaker interface ------------------------------------------------------------

    def play(self, pcm: np.ndarray, item_id: str | None = None) -> None:
        if self.buffer.write(pcm, item_id):  # the stream rests: start it for this
            self._keeper.drop_queued(self._restarted)
            self._keeper.beat()  # (its last call back was before the rest: not a stall)
            self._keeper.resting = False

    @property
    def resting(self) -> bool:
        """The output stream is stopped: nothing was played for REST_AFTER_S."""
        return self._keeper.resting

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._keeper.stop()

    @property
    def volume(self) -> int:
        return self._volume

    @volume.setter
    def volume(self, percent: int) -> None:
        self.set_volume(percent)

    def set_volume(self, percent: int) -> None:
        """0-100 %: the mixer control when configured (software gain if it fails), else gain."""
        percent = max(0, min(100, int(percent)))
        self._volume = percent
        if self._mixer is not None:
            try:
                self._mixer.set(percent)
                self.buffer.volume = 100
                return
            except AudioDeviceError as e:
                log.warning("%s; using the software volume instead", e)
        self.buffer.volume = percent

    @property
    def underruns(self) -> int:
        """Gaps inside an item's audio (the reply came slower than real time)."""
        return self.buffer.underruns

    @property
    def lost(self) -> bool:
        return self._keeper.lost

    # -- the device -------------------------------------------------------------------------

    def _open(self):
        # a new stream (at start, after a loss, around another device's rescan): the echo
        # canceller must pair afresh, and it runs until it rests
        self.buffer.reference.cut()
        self.buffer.running()
        self._keeper.resting = False
        s = self.settings
        dev = find_device(self._host.devices(), s.output_device, "output",
                          self._host.default_index("output"), "output_device")
        problems = []
        for rate in dict.fromkeys([s.output_rate, *FALLBACK_RATES]):  # in order, no repeats
            frames = rate * s.period_ms // 1000
            self._prepare(rate, frames)
            try:
                stream = self._host.open("output", dev.index, rate, s.output_channels, frames,
                                         self._callback)
            except OSError as e:
                problems.append(f"{rate} Hz: {e}")
                continue
            self._latency = stream.get_output_latency()
            self.rate, self.device_name = rate, dev.name
            log.info("speaker %r open at %d Hz, %d channel(s), %.0f ms output latency", dev.name,
                     rate, s.output_channels, 1000 * self._latency)
            return stream
        tried = "; ".join(problems) or "none of the rates is supported"
        raise AudioDeviceError(f"speaker {dev.name!r} cannot be opened with "
                               f"{s.output_channels} channel(s) at {s.output_rate}, 48000, 44100, "
                               f"24000 or 16000 Hz ({tried}): check [audio] output_channels and "
                               "output_rate against `mira-agent devices`")

    def _prime(self) -> None:
        """Play 100 ms of silence and flush it. On PulseAudio the first flush of a fresh stream
        took ~130 ms to silence the sink (every later one < 10 ms): pay that now, not at the
        first barge-in."""
        self.buffer.write(np.zeros(SAMPLE_RATE // 10, dtype=np.int16), None)
        deadline = time.monotonic() + 0.5
        while not self.buffer.drained() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.flush()
        self._probe = None  # (before the microphone runs, a null sink may still be asleep)

    def flush(self) -> dict[str, int]:
        """Silence at once: the queue, the resampler's FIFO and the device's buffer are dropped."""
        positions = self.buffer.flush()
        if not self._keeper.resting:  # (a resting stream holds nothing)
            self._keeper.drop_queued(self._restarted)
        return positions

    def _restarted(self) -> None:
        """Between the stream's abort and its start: what it held never plays."""
        self.buffer.reference.cut()
        self._swallow.restart()
        self._swallowing = False
        self._probe = [time.monotonic(), 0]
        self._fifo_len = 0
        if self._resampler is not None:
            self._resampler.clear()

    def _prepare(self, rate: int, frames: int) -> None:
        """Buffers for a stream at rate with blocks of frames (before it calls back)."""
        self._rate = rate
        self._block = np.zeros(frames, dtype=np.int16)
        self._wide = np.zeros((frames, self.settings.output_channels), dtype=np.int16)
        self._resampler = (None if rate == SAMPLE_RATE else
                           StreamResampler(SAMPLE_RATE, rate))
        self._src = np.zeros(math.ceil(frames * SAMPLE_RATE / rate), dtype=np.int16)
        self._fifo = np.zeros(4 * frames + 4096, dtype=np.int16)
        self._fifo_len = 0

    def _callback(self, in_data, frame_count, time_info, status):
        self._keeper.beat()
        if status & self._underflow_flag:
            self.device_underflows += 1
        dac, now = time_info.get("output_buffer_dac_time", 0), time_info.get("current_time", 0)
        if dac > 0 and now > 0 and 0 <= dac - now < 2:
            delay = dac - now
            self._watch_swallow(now, delay, frame_count / self._rate)
        else:
            delay = self._latency
            self._swallow.reset()
        if len(self._block) != frame_count:  # PortAudio keeps the block size; just in case
            self._prepare(self._rate, frame_count)
        if self._swallowing:  # nothing plays: the queue waits, and the reference is not told
            pcm = self._block
            pcm[:] = 0
        elif self._resampler is None:
            pcm = self._block
            self.buffer.read(pcm, delay)
        else:
            pcm = self._resampled(frame_count, delay)
        if self._probe is not None:
            self._time_restart(frame_count)
        flag = self._continue
        if self.restarts_at_once is not False and self.buffer.rest(REST_AFTER_S):  # the last block until
            # the next play()
            self._keeper.resting = True
            flag = self._complete
        if self.settings.output_channels > 1:
            self._wide[:] = pcm[:, None]
            return self._wide.tobytes(), flag
        return pcm.tobytes(), flag

    def _watch_swallow(self, now: float, delay: float, seconds: float) -> None:
        """Swallowed blocks never play: the run the echo canceller pairs with starts after."""
        dropped = self._swallow.swallowed(now, delay, seconds)
        if dropped:
            self.swallowed += 1
            if not self._swallowing:
                self._swallowing = True
                self.buffer.reference.cut()
        else:
            self._swallowing = False

    def _time_restart(self, frame_count: int) -> None:
        probe = self._probe
        probe[1] += 1
        if probe[1] == RESTART_PROBE:
            took = time.monotonic() - probe[0]
            self.restarts_at_once = took < RESTART_PROBE * frame_count / self._rate + 0.1
            self._probe = None

    def _resampled(self, n: int, delay: float) -> np.ndarray:
        """n device samples: 24 kHz blocks from the buffer through the resampler and FIFO."""
        fifo = self._fifo
        for _ in range(8):  # the resampler's start-up delay may need a few reads
            if self._fifo_len >= n:
                break
            src = self._src  # a whole period each time: soxr holds back small inputs
            ahead = (self._fifo_len + self._resampler.delay()) / self._rate
            self.buffer.read(src, delay + ahead)
            out = self._resampler.process(src)
            take = min(len(out), len(fifo) - self._fifo_len)
            fifo[self._fifo_len:self._fifo_len + take] = out[:take]
            self._fifo_len += take
        if self._fifo_len < n:
            fifo[self._fifo_len:n] = 0
            self._fifo_len = n
        self._block[:] = fifo[:n]
        rest = self._fifo_len - n
        fifo[:rest] = fifo[n:self._fifo_len]
        self._fifo_len = rest
        return self._block
