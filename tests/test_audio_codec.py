"""G.711 against audioop (the stdlib's to 3.12, audioop-lts from 3.13), and the pcm16 / G.711 codecs of the realtime formats."""

import warnings

import numpy as np
import pytest

from agent.audio import g711
from agent.audio.codec import FORMATS, StreamDecoder, StreamEncoder, decode, encode
from agent.errors import ProtocolError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def tone(seconds=1.0, hz=440.0, rate=24000, amp=8000):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_ulaw_encode_matches_audioop_on_every_sample():
    """mu-law codes of all 65,536 int16 samples are those of audioop.lin2ulaw."""
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.astype("<i2").tobytes(), 2)


def test_alaw_encode_matches_audioop_on_every_sample():
    """A-law codes of all 65,536 int16 samples are those of audioop.lin2alaw."""
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.astype("<i2").tobytes(), 2)


def test_ulaw_decode_matches_audioop_on_every_code():
    """All 256 mu-law codes decode to audioop.ulaw2lin's samples."""
    assert g711.ulaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_matches_audioop_on_every_code():
    """All 256 A-law codes decode to audioop.alaw2lin's samples."""
    assert g711.alaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_pcm16_round_trip_is_exact_little_endian():
    """pcm16 encodes to little-endian bytes and decodes back to the same samples."""
    data = encode(ALL_SAMPLES, "pcm16")
    assert data[:2] == b"\x00\x80" and len(data) == 2 * 65536
    back = decode(data, "pcm16")
    assert back.dtype == np.int16 and back.flags.writeable
    np.testing.assert_array_equal(back, ALL_SAMPLES)


@pytest.mark.parametrize("fmt", ["g711_ulaw", "g711_alaw"])
def test_g711_is_8khz_and_round_trips_a_tone(fmt):
    """G.711 carries one byte per 8 kHz sample, and a 440 Hz tone comes back at 24 kHz within 30 dB SNR."""
    pcm = tone(1.0)
    data = encode(pcm, fmt)
    assert len(data) == 8000
    back = decode(data, fmt)
    assert back.dtype == np.int16 and len(back) == 24000
    core = slice(1000, -1000)
    noise = back[core].astype(float) - pcm[core]
    snr = 10 * np.log10(np.mean(pcm[core].astype(float) ** 2) / np.mean(noise ** 2))
    assert snr > 30


def test_odd_pcm16_buffer_is_a_protocol_error():
    """decode() refuses half a sample with a ProtocolError naming the byte count."""
    with pytest.raises(ProtocolError, match="3 bytes"):
        decode(b"\x01\x02\x03", "pcm16")


def test_stream_decoder_carries_an_odd_byte_to_the_next_delta():
    """A pcm16 delta split mid-sample loses nothing: the stray byte starts the next delta."""
    pcm = tone(0.1)
    data = encode(pcm, "pcm16")
    dec = StreamDecoder("pcm16")
    parts = [dec.decode(data[:101]), dec.decode(data[101:502]), dec.decode(data[502:])]
    np.testing.assert_array_equal(np.concatenate(parts), pcm)
    assert dec.odd_deltas == 1


def test_unknown_format_is_refused():
    """An unknown format name is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match="pcm16, g711_ulaw, g711_alaw"):
        encode(tone(0.01), "opus")
    assert FORMATS == ("pcm16", "g711_ulaw", "g711_alaw")


@pytest.mark.parametrize("fmt", ["g711_ulaw", "g711_alaw"])
def test_streaming_g711_has_no_clicks_at_frame_edges(fmt):
    """Frame-by-frame G.711 encode then delta-by-delta decode equals the one-shot path closely (no edge artefacts)."""
    pcm = tone(1.0, hz=300)
    enc, dec = StreamEncoder(fmt), StreamDecoder(fmt)
    data = b"".join(enc.encode(f) for f in pcm.reshape(-1, 480)) + enc.flush()
    assert abs(len(data) - 8000) <= 2
    out = np.concatenate([dec.decode(data[i:i + 160]) for i in range(0, len(data), 160)]
                         + [dec.flush()])
    assert abs(len(out) - 24000) <= 6
    core = slice(2000, 22000)
    # the stream is delayed by nothing (soxr compensates); compare sample by sample
    err = out[core].astype(float) - pcm[core]
    assert np.sqrt(np.mean(err ** 2)) < 0.03 * 8000 / np.sqrt(2)
    assert np.max(np.abs(np.diff(out[core].astype(int)))) < 700  # a 300 Hz tone at 8000 moves <= 628 a sample


def test_stream_decoder_reset_forgets_the_stream():
    """After reset() nothing of the old stream comes out of the resampler."""
    dec = StreamDecoder("g711_ulaw")
    dec.decode(encode(tone(0.2), "g711_ulaw"))
    dec.reset()
    out = np.concatenate([dec.decode(b"\xff" * 1600), dec.flush()])  # 0xff: mu-law zero
    assert len(out) > 4000 and np.max(np.abs(out)) <= 1  # soxr rounding; the tone was 8000
