"""The microphone: a sound card through PortAudio, as exact 20 ms frames of 24 kHz mono.

The device hands audio over every [audio] input_period_ms (60 ms by default: each wake of
the device thread costs about as much as the audio it carries, so a longer period is most
of what an idle microphone saves; the frames then come three at a time). The PortAudio
callback only hands the bytes it was given to a bounded queue (no blocking,
no logging, no allocation of its own). A worker thread picks the voice channel, resamples
with soxr's streaming resampler (its state carries across chunks: no clicks at chunk edges)
and cuts exact frames for on_frame.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

import numpy as np

from agent.audio.base import SAMPLE_RATE, FrameCallback, Microphone
from agent.audio.frames import Framer
from agent.audio.resample import StreamResampler
from agent.audio.portaudio import HOST, KEEPER_POLL_S, PortAudioHost, StreamKeeper, find_device
from agent.audio.settings import AudioSettings
from agent.errors import AudioDeviceError, ConfigError
from agent.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

FALLBACK_RATES = (48000, 44100, 16000)
QUEUE_SECONDS = 2.0  # audio the worker may fall behind by before chunks are dropped


class PyAudioMicrophone(Microphone):
    """The configured input device, reopened with backoff when it is lost.

    on_state(ok, message) hears of losses and returns (see StreamKeeper).
    """

    def __init__(self, settings: AudioSettings, on_state: Callable[[bool, str], None] | None = None,
                 *, host: PortAudioHost = HOST, **keeper_options):
        if settings.input_channel >= settings.input_channels:
            raise ConfigError(f"[audio] input_channel = {settings.input_channel} but only "
                              f"{settings.input_channels} channels are opened: set input_channel "
                              f"below input_channels")
        self.settings = settings
        self._host = host
        self.rate = 0
        """The device rate in use (0 until started)."""
        self.device_name = ""
        self.overflows = 0
        """Times the device reported lost input (the reader was late)."""
        self.dropped_chunks = 0
        """Chunks dropped because the worker fell more than QUEUE_SECONDS behind."""
        self._inbox: queue.Queue = queue.Queue(maxsize=max(4, int(QUEUE_SECONDS * 1000
                                                                    / settings.input_period_ms)))
        keeper_options.setdefault("poll_s", KEEPER_POLL_S)
        self._keeper = StreamKeeper("microphone", self._open, on_state, host=host, **keeper_options)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._ratelog = RateLimitedLog(log, 60.0)
        self._pyaudio_continue = None

    @property
    def lost(self) -> bool:
        """True while the device is gone and being reopened."""
        return self._keeper.lost

    def start(self, on_frame: FrameCallback, on_end: Callable[[], None] | None = None) -> None:
        """Open the device (AudioDeviceError when it cannot be) and deliver frames to on_frame.

        A sound card never ends, so on_end is never called.
        """
        if self._worker is not None:
            raise RuntimeError("the microphone is already started")
        import pyaudio
        self._pyaudio_continue = pyaudio.paContinue
        self._overflow_flag = pyaudio.paInputOverflow
        self._stop.clear()
        self._keeper.start()
        self._worker = threading.Thread(target=self._work, args=(on_frame,),
                                        name="microphone", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._keeper.stop()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        self._worker = None

    # -- the device (PortAudio's thread) -------------------------------------------------

    def _open(self):
        s = self.settings
        dev = find_device(self._host.devices(), s.input_device, "input",
                          self._host.default_index("input"), "input_device")
        problems = []
        for rate in dict.fromkeys([s.input_rate, *FALLBACK_RATES]):  # in order, no repeats
            frames = rate * s.input_period_ms // 1000
            self._post_marker(rate)  # before the first chunk of the new stream
            try:
                stream = self._host.open("input", dev.index, rate, s.input_channels, frames,
                                         self._callback)
            except OSError as e:
                problems.append(f"{rate} Hz: {e}")
                continue
            self.rate, self.device_name = rate, dev.name
            log.info("microphone %r open at %d Hz, %d channel(s), using channel %d", dev.name,
                     rate, s.input_channels, s.input_channel)
            return stream
        tried = "; ".join(problems) or "none of the rates is supported"
        raise AudioDeviceError(f"microphone {dev.name!r} cannot be opened with "
                               f"{s.input_channels} channel(s) at {s.input_rate}, 48000, 44100 "
                               f"or 16000 Hz ({tried}): check [audio] input_channels and "
                               "input_rate against `mira-agent devices`")

    def _post_marker(self, rate: int) -> None:
        """Tell the worker a stream at `rate` starts (a new resampler); stale chunks are dropped."""
        while True:
            try:
                self._inbox.put_nowait(rate)
                return
            except queue.Full:
                try:
                    self._inbox.get_nowait()
                except queue.Empty:
                    pass

    def _callback(self, data, frame_count, time_info, status):
        self._keeper.beat()
        if status & self._overflow_flag:
            self.overflows += 1
        try:
            self._inbox.put_nowait(data)
        except queue.Full:
            self.dropped_chunks += 1
        return None, self._pyaudio_continue

    # -- the worker --------------------------------------------------------------------------

    def _work(self, on_frame: FrameCallback) -> None:
        s = self.settings
        framer, resampler = Framer(), None
        reported = 0
        while not self._stop.is_set():
            try:
                data = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(data, int):  # (re)opened at this rate: the old resampler state is not
                resampler = (None if data == SAMPLE_RATE else         # this stream's
                             StreamResampler(data, SAMPLE_RATE))
                continue
            pcm = np.frombuffer(data, dtype="<i2")
            if s.input_channels > 1:
                pcm = np.ascontiguousarray(pcm.reshape(-1, s.input_channels)[:, s.input_channel])
            if resampler is not None:
                pcm = resampler.process(pcm)
            for frame in framer.push(pcm):
                on_frame(frame)
            lost = self.overflows + self.dropped_chunks
            if lost != reported and self._ratelog(
                    logging.WARNING, "overflow",
                    f"microphone {self.device_name!r} lost input: {self.overflows} overflows, "
                    f"{self.dropped_chunks} chunks dropped so far (the machine is too busy?)"):
                reported = lost
