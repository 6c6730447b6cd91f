"""The playout buffer: reply audio queued by the conversation, read by the device.

It is the one structure the audio callback shares with the rest of the daemon. The
conversation thread writes 24 kHz int16 chunks tagged with their item_id; the device thread
reads fixed blocks. Audio is never dropped or reordered; a starved read plays silence,
reached through a 2 ms fade from the last sample so it does not click. The buffer knows,
per item, how many samples have really reached the speaker: those handed to the device,
minus those that the device said are still in its buffer when it asked for them (the
`delay` of each read), advanced by the clock since. The lock is only held to move
references and copy at most one block; nothing in `read` allocates except on rare events.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable

import numpy as np

from agent.audio.base import SAMPLE_RATE, Speaker

ANONYMOUS = ""  # the item_id of audio queued without one
_KEEP_ITEMS = 64  # items whose positions are remembered


def volume_to_gain(volume: int | float) -> float:
    """0-100 % to an amplitude factor: squared, so equal steps sound roughly equally loud."""
    if not 0 <= volume <= 100:
        raise ValueError(f"volume {volume} is outside 0-100 %")
    return (volume / 100.0) ** 2


class ReferenceRing:
    """What the speaker played, sample by sample, for one reader (the echo canceller).

    The device thread writes every block it plays (silence included), the reader takes
    them in order. When the reader falls more than the capacity behind, the oldest samples
    are skipped and counted in `dropped`.

    Within a run of the device's stream the blocks follow each other sample for sample, so
    the reader's pairing of them with the microphone holds. A stream that stops (`pause`:
    nothing to play) or drops what it held (`cut`: a flush's abort) breaks that: while it is
    stopped, silence plays and nothing is written (`paused`); when it runs again, `runs`
    counts one more and the echo path may sit a little earlier or later than before (the
    sound server's own buffering differs from one start to the next), which the reader
    must find again.
    """

    def __init__(self, capacity: int):
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._written = 0
        self._read = 0
        self.dropped = 0
        self.paused = False
        """The stream is stopped: silence plays, nothing is written."""
        self.runs = 1
        """Runs of the device's stream so far: one more each time it runs again."""
        self._lock = threading.Lock()

    @property
    def written(self) -> int:
        """Samples written since the start: the device position of the next sample."""
        return self._written

    @property
    def available(self) -> int:
        with self._lock:
            return self._written - self._read

    def pause(self) -> None:
        """The stream stopped (what it held played out, or was dropped: `cut`)."""
        with self._lock:
            self.paused = True

    cut = pause

    def write(self, block: np.ndarray) -> None:
        cap = len(self._buf)
        with self._lock:
            if self.paused:
                self.paused = False
                self.runs += 1
            n = len(block)
            if n > cap:
                block, self._written = block[n - cap:], self._written + n - cap
                n = cap
            start = self._written % cap
            first = min(n, cap - start)
            self._buf[start:start + first] = block[:first]
            self._buf[:n - first] = block[first:]
            self._written += n
            behind = self._written - self._read - cap
            if behind > 0:
                self.dropped += behind
                self._read += behind

    def read(self, n: int) -> np.ndarray | None:
        """The next n played samples, or None until n are available."""
        cap = len(self._buf)
        with self._lock:
            if self._written - self._read < n or n > cap:
                return None
            start = self._read % cap
            first = min(n, cap - start)
            out = np.concatenate((self._buf[start:start + first], self._buf[:n - first]))
            self._read += n
            return out


class PlayoutBuffer:
    """Queued reply audio between the conversation thread and the device thread.

    latency: default seconds between a read and its first sample reaching the speaker
    (used when `read` is not told the device's own figure). paced=False makes a read
    count as played at once (a file sink that is not real time).
    """

    def __init__(self, *, rate: int = SAMPLE_RATE, latency: float = 0.0, volume: int = 100,
                 paced: bool = True, reference_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, fade_ms: float = 2.0):
        self.rate = rate
        self.latency = latency
        self.paced = paced
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()  # [item, samples, offset]
        self._queued = 0
        self._handed: OrderedDict[str, int] = OrderedDict()  # item -> samples given to the device
        self._segments: deque[list] = deque()  # [device_pos, item, n]: maybe not heard yet
        self._pos = 0  # samples (audio and silence) handed to the device
        self._anchor = (0.0, 0, 0.0)  # (clock at last read, its block's device_pos, its delay)
        self._heard_max = 0
        self._starved: str | None = None  # item whose audio ran out mid-stream
        self._tail: tuple[str | None, int] = (None, -1)  # last item handed, where its audio ended
        self._starved_at = 0
        self.underruns = 0
        """Times an item's audio ran out before its next chunk arrived (a gap inside an item)."""
        self.underrun_samples = 0
        """Silence samples played inside items because of underruns."""
        self.flushes = 0
        """flush() calls so far; the device thread compares it to drop its own state."""
        self._idle_since: float | None = None  # when the queue last ran empty (None: it is not)
        self._resting = False
        self.wake_lead = 0
        """Samples of silence queued ahead of the first write after a rest (a sound server
        may swallow the first ms of a stream that starts again)."""
        self._gain = self._target_gain = volume_to_gain(volume)
        self._volume = volume
        self._last = 0  # last sample played, to fade from on a starved read
        self._fade = np.linspace(1.0, 0.0, max(1, int(rate * fade_ms / 1000)) + 1,
                                 dtype=np.float32)[1:]
        self._scratch = np.zeros(0, dtype=np.float32)
        self.reference = ReferenceRing(max(1, int(rate * reference_seconds)))
        """Every sample played, in order, for the echo canceller."""
        self.on_played: Callable[[np.ndarray], None] | None = None
        """Called on the device thread with each block as played (a view: copy it, be quick)."""

    # -- the conversation's side -------------------------------------------------------

    @property
    def volume(self) -> int:
        return self._volume

    @volume.setter
    def volume(self, volume: int) -> None:
        self._target_gain = volume_to_gain(volume)
        self._volume = volume

    @property
    def gain(self) -> float:
        """The amplitude factor the volume stands for."""
        return self._target_gain

    @property
    def queued_samples(self) -> int:
        """Samples written and not yet handed to the device."""
        return self._queued

    def write(self, pcm: np.ndarray, item_id: str | None = None) -> bool:
        """Queue 24 kHz int16 audio of an item (copied); it plays after what is queued.
        True when the device was resting (see `rest`): it must be started to play it."""
        samples = np.array(pcm, dtype=np.int16, copy=True).reshape(-1)
        item = ANONYMOUS if item_id is None else item_id
        woke = False
        with self._lock:
            if item not in self._handed:
                self._handed[item] = 0
                if len(self._handed) > _KEEP_ITEMS:
                    self._handed.popitem(last=False)
            if self._starved is not None:
                if self._starved == item:
                    self.underruns += 1
                    self.underrun_samples += self._pos - self._starved_at
                self._starved = None
            if len(samples):
                woke, self._resting = self._resting, False
                if woke and self.wake_lead:
                    self._queue.append([ANONYMOUS, np.zeros(self.wake_lead, np.int16), 0])
                    self._queued += self.wake_lead
                self._queue.append([item, samples, 0])
                self._queued += len(samples)
                self._idle_since = None
        return woke

    def flush(self) -> dict[str, int]:
        """Drop everything queued (the next read is silent); samples heard so far per item."""
        with self._lock:
            self._queue.clear()
            self._queued = 0
            self._starved, self._tail = None, (None, -1)
            self._idle_since = self._idle_since or self._clock()
            self.flushes += 1
            return self._positions(self._heard())

    def played_samples(self, item_id: str | None) -> int:
        """Samples of the item that have reached the speaker (0 for an unknown item)."""
        item = ANONYMOUS if item_id is None else item_id
        with self._lock:
            return self._played(item, self._heard())

    def positions(self) -> dict[str, int]:
        """Samples heard so far of each item the buffer remembers."""
        with self._lock:
            return self._positions(self._heard())

    def drained(self) -> bool:
        """True when nothing is queued and everything handed to the device has been heard."""
        with self._lock:
            if self._queue:
                return False
            heard = self._heard()
            return not self._segments or self._segments[-1][0] + self._segments[-1][2] <= heard

    # -- the device's side ---------------------------------------------------------------

    def read(self, out: np.ndarray, delay: float | None = None) -> int:
        """Fill the int16 block `out` with what to play next; returns the audio samples in it.

        delay: seconds from now until out[0] reaches the speaker (the device's own
        figure when it has one; else the buffer's latency).
        """
        n = len(out)
        filled = 0
        with self._lock:
            start = self._pos
            while filled < n and self._queue:
                entry = self._queue[0]
                item, samples, offset = entry
                take = min(n - filled, len(samples) - offset)
                out[filled:filled + take] = samples[offset:offset + take]
                self._hand(item, start + filled, take)
                filled += take
                if offset + take == len(samples):
                    self._queue.popleft()
                else:
                    entry[2] = offset + take
            self._queued -= filled
            if filled < n and self._starved is None and self._tail[1] == start + filled:
                self._starved, self._starved_at = self._tail[0], start + filled
            self._pos = start + n
            now = self._clock()
            self._anchor = (now, start, self.latency if delay is None else delay)
            heard = self._heard()
            while self._segments and self._segments[0][0] + self._segments[0][2] <= heard:
                self._segments.popleft()
            if not self._queue and self._idle_since is None:
                self._idle_since = now
        self._finish(out, filled)
        return filled

    def rest(self, after_s: float) -> bool:
        """True when nothing has been queued for after_s seconds: the device may stop its
        stream (it costs CPU while it runs). The buffer then counts as resting, and the next
        write says so; the reference is paused meanwhile."""
        with self._lock:
            if self._queue or self._idle_since is None \
                    or self._clock() - self._idle_since < after_s:
                return False
            self._resting = True
            self.reference.pause()
            return True

    def running(self) -> None:
        """The device's stream runs (again) by itself: the buffer no longer rests."""
        with self._lock:
            self._resting = False

    def _finish(self, out: np.ndarray, filled: int) -> None:
        """Gain on the audio, a fade into the silence after it, then the reference taps."""
        n = len(out)
        if filled:
            self._apply_gain(out[:filled])
        else:
            self._gain = self._target_gain  # nothing audible to glide over
        if filled < n:
            last = int(out[filled - 1]) if filled else self._last
            fade = min(len(self._fade), n - filled) if last else 0
            if fade:
                np.multiply(self._fade[:fade], last, out=self._scratch_for(fade))
                out[filled:filled + fade] = self._scratch[:fade]
            out[filled + fade:] = 0
        self._last = int(out[-1]) if n else self._last
        self.reference.write(out)
        if self.on_played is not None:
            self.on_played(out)

    def _apply_gain(self, audio: np.ndarray) -> None:
        start, target = self._gain, self._target_gain
        if start == 1.0 and target == 1.0:
            return
        scratch = self._scratch_for(len(audio))
        if start == target:
            np.multiply(audio, target, out=scratch)
        else:  # glide to a new volume over the block: no zipper noise
            np.multiply(audio, np.linspace(start, target, len(audio), dtype=np.float32),
                        out=scratch)
            self._gain = target
        np.rint(scratch, out=scratch)
        audio[:] = scratch

    def _scratch_for(self, n: int) -> np.ndarray:
        if len(self._scratch) < n:
            self._scratch = np.zeros(max(n, 2 * len(self._scratch)), dtype=np.float32)
        return self._scratch[:n]

    # -- positions (lock held) -------------------------------------------------------------

    def _hand(self, item: str, at: int, n: int) -> None:
        if item in self._handed:
            self._handed[item] += n
        self._tail = (item, at + n)
        last = self._segments[-1] if self._segments else None
        if last is not None and last[1] == item and last[0] + last[2] == at:
            last[2] += n
        else:
            self._segments.append([at, item, n])

    def _heard(self) -> int:
        """Device position now reaching the speaker: samples before it have been heard."""
        if not self.paced:
            return self._pos
        when, block_start, delay = self._anchor
        pos = block_start + round((self._clock() - when - delay) * self.rate)
        # never backwards: a device's delay figure jitters, a position must not
        self._heard_max = max(self._heard_max, min(pos, self._pos))
        return self._heard_max

    def _played(self, item: str, heard: int) -> int:
        played = self._handed.get(item, 0)
        for at, seg_item, n in self._segments:
            if seg_item == item and at + n > heard:
                played -= min(n, at + n - heard)
        return played

    def _positions(self, heard: int) -> dict[str, int]:
        return {item: self._played(item, heard) for item in self._handed}


class BufferedSpeaker(Speaker):
    """A speaker whose device (a sound card, a file) plays from a PlayoutBuffer, `self.buffer`."""

    buffer: PlayoutBuffer

    def play(self, pcm: np.ndarray, item_id: str | None = None) -> None:
        self.buffer.write(pcm, item_id)

    def flush(self) -> dict[str, int]:
        return self.buffer.flush()

    def played_samples(self, item_id: str) -> int:
        return self.buffer.played_samples(item_id)

    def drained(self) -> bool:
        return self.buffer.drained()

    @property
    def reference(self) -> ReferenceRing:
        return self.buffer.reference
