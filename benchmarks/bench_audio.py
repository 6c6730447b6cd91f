"""Audio figures: CPU of the capture path, delta-to-sink and delta-to-device latency,
flush to silence, and played-position error (real-time rows on a PulseAudio null sink)."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.audio.base import SAMPLE_RATE
from agent.audio.codec import StreamDecoder, encode
from agent.audio.frames import Framer
from agent.audio.resample import StreamResampler
from agent.audio.wavfile import WavSpeaker
from benchmarks.common import Row, median, percentile

TESTS = Path(__file__).resolve().parent.parent / "tests"


def _capture_cpu(rate: int, channels: int, seconds: float = 60.0) -> float:
    """CPU seconds per audio second of the microphone worker: bytes -> channel -> 24 kHz -> frames."""
    period = rate * 20 // 1000
    rng = np.random.default_rng(0)
    chunk = rng.integers(-8000, 8000, period * channels, dtype=np.int16).astype("<i2").tobytes()
    resampler, framer, frames = StreamResampler(rate, SAMPLE_RATE), Framer(), 0
    chunks = int(seconds * 50)
    t0 = time.process_time()
    for _ in range(chunks):
        pcm = np.frombuffer(chunk, dtype="<i2")
        if channels > 1:
            pcm = np.ascontiguousarray(pcm.reshape(-1, channels)[:, 0])
        frames += len(framer.push(resampler.process(pcm)))
    cpu = time.process_time() - t0
    assert frames >= chunks - 2
    return cpu / seconds


def _delta_to_sink(fmt: str, count: int = 400) -> list[float]:
    """ms from a response.audio.delta's JSON text to its samples written in the WAV sink."""
    rng = np.random.default_rng(1)
    pcm = rng.integers(-8000, 8000, 2400, dtype=np.int16)  # 100 ms deltas, as the service sends
    text = json.dumps({"type": "response.audio.delta", "event_id": "e", "response_id": "r",
                       "item_id": "item", "output_index": 0, "content_index": 0,
                       "delta": base64.b64encode(encode(pcm, fmt)).decode()})
    out = []
    with tempfile.TemporaryDirectory() as d, WavSpeaker(Path(d) / "out.wav") as speaker:
        decoder = StreamDecoder(fmt)
        for _ in range(count):
            t0 = time.perf_counter()
            event = json.loads(text)
            speaker.play(decoder.decode(base64.b64decode(event["delta"])), event["item_id"])
            out.append(1000 * (time.perf_counter() - t0))
    return out


def _scenario(name: str, *args) -> dict:
    sys.path[:0] = [str(TESTS)]
    try:
        from fixtures_audio import pulseaudio_available, run_scenario
    finally:
        sys.path.remove(str(TESTS))
    if not pulseaudio_available():
        raise RuntimeError("pulseaudio, pulseaudio-utils and libasound2-plugins are needed")
    with tempfile.TemporaryDirectory() as d:
        return run_scenario(name, {}, d, *args, timeout=120)


def rows() -> list[Row]:
    out = []
    for rate, channels in ((48000, 2), (16000, 1)):
        cpu = _capture_cpu(rate, channels)
        out.append(Row(f"capture->resample->frame CPU s/audio s, {rate // 1000} kHz x{channels}",
                       f"{cpu:.4f}", "<= 0.01", cpu <= 0.01))
    for fmt in ("pcm16", "g711_ulaw"):
        ms = _delta_to_sink(fmt)
        p99 = percentile(ms, 99)
        out.append(Row(f"delta-to-sink ms (JSON->b64->{fmt}->WAV sink) median / p99",
                       f"{median(ms):.3f} / {p99:.3f}", "p99 <= 2", p99 <= 2))
    for rate in (24000, 48000):
        r = _scenario("pulse_delta_latency", rate, 100)
        ms = [1000 * d for d in r["delays"]]
        period = 1000 * r["period_s"]
        beyond = percentile(ms, 99) - period
        out.append(Row(f"delta-to-device ms at {rate // 1000} kHz (period {period:.0f}) median / p99",
                       f"{median(ms):.1f} / {percentile(ms, 99):.1f}", f"p99 <= {period + 5:.0f}",
                       beyond <= 5 and len(ms) >= 90))
    r = _scenario("pulse_wake", 20)
    ms = [1000 * d for d in r["delays"]]
    period = 1000 * r["period_s"]
    lead = 2 * period
    ok = len(ms) == 20 and all(r["rested"]) and all(r["whole"]) and min(ms) >= 0
    out.append(Row(f"delta-to-device ms after the speaker rested (+{lead:.0f} ms silence first) "
                   "median / p99", f"{median(ms):.1f} / {percentile(ms, 99):.1f}" if ms else "-",
                   f"p99 <= {period + 5:.0f}", ok and percentile(ms, 99) <= period + 5))
    r = _scenario("pulse_playback")
    flush, pos = r["flush"], r["position_error_ms"]
    # from the flush() call to the first block handed over after it: never negative
    to_device = flush["to_device_ms"]
    out.append(Row("flush to silence at the device, ms", f"{to_device:.1f}",
                   "<= 20 (a period)", 0 <= to_device <= 20))
    at_sink = flush["to_silence_at_sink_ms"]
    out.append(Row("flush to silence at the sink, ms (device buffer incl.)", f"{at_sink:.1f}",
                   "-", None if 0 <= at_sink <= 1000 else False))
    out.append(Row("played-position error ms, median / p95 / max (2 s reply, after 200 ms)",
                   f"{pos['median']:.2f} / {pos['p95']:.2f} / {pos['max']:.1f}", "<= 10",
                   pos["p95"] <= 10))
    out.append(Row("played-position error ms in a reply's first 200 ms (sink rewinds), max",
                   f"{pos['start_max']:.1f}", "-", None))
    out.append(Row("played-position error at flush, ms", f"{flush['position_error_ms']:.2f}",
                   "<= 10", abs(flush["position_error_ms"]) <= 10))
    return out
