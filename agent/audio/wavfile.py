"""The file backend: a WAV file as the microphone, a WAV file as the speaker (no hardware)."""

from __future__ import annotations

import logging
import threading
import time
import wave
from pathlib import Path
from typing import Callable

import numpy as np

from agent.audio.base import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, FrameCallback, Microphone
from agent.audio.playout import BufferedSpeaker, PlayoutBuffer
from agent.audio.resample import resample
from agent.errors import AudioDeviceError

log = logging.getLogger(__name__)


def read_wav(path: str | Path) -> np.ndarray:
    """A 16-bit PCM WAV (mono, or stereo mixed down) as 24 kHz mono int16."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            data = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise AudioDeviceError(f"audio file {path} does not exist: give the path of a "
                               "16-bit PCM WAV file") from None
    except (OSError, EOFError, wave.Error) as e:
        raise AudioDeviceError(f"audio file {path} is not a readable WAV file ({e}): convert it "
                               "with `sox IN -b 16 OUT.wav`") from None
    if width != 2 or channels not in (1, 2):
        raise AudioDeviceError(f"audio file {path} has {channels} channels of {8 * width}-bit "
                               "samples: only 16-bit mono or stereo is read; convert it with "
                               "`sox IN -b 16 -c 1 OUT.wav`")
    pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
    if channels == 2:
        pcm = pcm.reshape(-1, 2).mean(axis=1).round().astype(np.int16)
    if rate != SAMPLE_RATE:
        pcm = resample(pcm, rate, SAMPLE_RATE)
    return pcm


def frames_of(pcm: np.ndarray) -> list[np.ndarray]:
    """Whole 20 ms frames of pcm, the last padded with silence."""
    pad = -len(pcm) % FRAME_SAMPLES
    whole = np.concatenate((pcm, np.zeros(pad, dtype=np.int16))) if pad else pcm.copy()
    return list(whole.reshape(-1, FRAME_SAMPLES))


class WavMicrophone(Microphone):
    """Plays a WAV file as the microphone: exact 20 ms frames at 24 kHz, on its own thread.

    realtime=True paces the frames like a sound card (one per 20 ms); False delivers them
    as fast as the callback takes them. The file is read whole when the object is made, so
    a missing or unsupported file fails there, with an AudioDeviceError.
    """

    def __init__(self, path: str | Path, realtime: bool = True):
        self.path = Path(path)
        self.realtime = realtime
        self.frames = frames_of(read_wav(self.path))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio the file gives (whole frames)."""
        return len(self.frames) * FRAME_MS / 1000

    def start(self, on_frame: FrameCallback, on_end: Callable[[], None] | None = None) -> None:
        """Deliver the file from its start; on_end is called after the last frame."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the microphone is already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(on_frame, on_end),
                                        name="wav-microphone", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self, on_frame: FrameCallback, on_end: Callable[[], None] | None) -> None:
        start = time.monotonic()
        for i, frame in enumerate(self.frames):
            if self.realtime:
                wait = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()  # a frame is due
                if wait > 0 and self._stop.wait(wait):                        # once captured
                    return
            if self._stop.is_set():
                return
            on_frame(frame.copy())
        if on_end is not None and not self._stop.is_set():
            on_end()


class WavSpeaker(BufferedSpeaker):
    """Plays into a 24 kHz mono 16-bit WAV file: the file holds exactly the audio played.

    realtime=False writes each chunk at once (played means written). realtime=True plays
    like a sound card: a thread takes one 20 ms block per 20 ms from the playout buffer, so
    flush() cuts a reply short and positions advance with the clock. Silence between
    chunks is not written in either mode. The header is valid after every write.
    """

    def __init__(self, path: str | Path, realtime: bool = False, volume: int = 100):
        self.path = Path(path)
        self.realtime = realtime
        self.buffer = PlayoutBuffer(paced=realtime, volume=volume)
        self._file_lock = threading.Lock()
        try:
            self._file = open(self.path, "wb")  # ours, to flush: the header is valid on disk
        except OSError as e:
            raise AudioDeviceError(f"cannot write the speaker's WAV file {self.path} "
                                   f"({e.strerror}): set [audio] output_file to a writable "
                                   "path") from None
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if realtime:
            self._thread = threading.Thread(target=self._run, name="wav-speaker", daemon=True)
            self._thread.start()

    @property
    def samples_written(self) -> int:
        """Samples in the file so far."""
        return self._samples

    @property
    def volume(self) -> int:
        return self.buffer.volume

    @volume.setter
    def volume(self, percent: int) -> None:
        self.buffer.volume = percent

    def set_volume(self, percent: int) -> None:
        """0-100 %, as software gain on what is written."""
        self.buffer.volume = max(0, min(100, int(percent)))

    def play(self, pcm: np.ndarray, item_id: str | None = None) -> None:
        self.buffer.write(pcm, item_id)
        if not self.realtime:
            with self._file_lock:  # one reader at a time, so the block is exactly what is queued
                block = np.empty(self.buffer.queued_samples, dtype=np.int16)
                self._write(block[:self.buffer.read(block)])

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._file_lock:
            if self._wav is not None:
                self._wav.close()
                self._file.close()
                self._wav = None

    def _write(self, audio: np.ndarray) -> None:
        if len(audio) and self._wav is not None:
            self._wav.writeframes(audio.astype("<i2", copy=False).tobytes())
            self._file.flush()
            self._samples += len(audio)

    def _run(self) -> None:
        block = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        start, i = time.monotonic(), 0
        while not self._stop.is_set():
            with self._file_lock:
                self._write(block[:self.buffer.read(block, delay=0.0)])
            i += 1
            wait = start + i * FRAME_MS / 1000 - time.monotonic()
            if wait < -0.2:  # fell far behind (a stalled machine): do not race to catch up
                start, i = time.monotonic(), 0
            elif wait > 0:
                self._stop.wait(wait)
