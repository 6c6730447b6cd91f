"""Exact 20 ms framing of chunks of any length."""

import numpy as np

from agent.audio.base import FRAME_SAMPLES
from agent.audio.frames import Framer


def test_chunks_of_any_length_come_out_as_exact_frames_with_nothing_lost():
    """Random chunk sizes (0 to 2000 samples) give 480-sample frames holding every sample in order."""
    rng = np.random.default_rng(1)
    stream = rng.integers(-32768, 32767, 100_000, dtype=np.int16)
    framer, frames, i = Framer(), [], 0
    while i < len(stream):
        n = int(rng.integers(0, 2000))
        frames += framer.push(stream[i:i + n])
        i += n
    assert all(len(f) == FRAME_SAMPLES and f.dtype == np.int16 for f in frames)
    whole = len(stream) // FRAME_SAMPLES
    assert len(frames) == whole and framer.pending == len(stream) - whole * FRAME_SAMPLES
    np.testing.assert_array_equal(np.concatenate(frames), stream[:whole * FRAME_SAMPLES])


def test_frames_are_the_callers_to_keep():
    """A frame returned is not changed by later pushes or by changing the pushed chunk."""
    framer = Framer()
    chunk = np.arange(300, dtype=np.int16)
    assert framer.push(chunk) == []
    first = framer.push(chunk)[0]
    chunk[:] = 0
    framer.push(np.full(960, 7, dtype=np.int16))
    np.testing.assert_array_equal(first, np.concatenate((np.arange(300), np.arange(180))))


def test_flush_pads_the_partial_frame_with_silence():
    """flush() returns the partial frame padded to 480 samples, then None."""
    framer = Framer()
    framer.push(np.ones(100, dtype=np.int16))
    last = framer.flush()
    assert len(last) == FRAME_SAMPLES and last[:100].all() and not last[100:].any()
    assert framer.flush() is None and framer.pending == 0
