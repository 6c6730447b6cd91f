"""The local server: how fast it answers, what recognition costs, how fast it streams replies."""

import base64
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.devserver import DevServer, Script
from agent.devserver.asr import Recognizer
from agent.devserver.probe import Probe
from agent.devserver.vad import EnergyVad
from benchmarks.common import Row, median

RATE = 24000


def _speech(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        wav, raw = Path(d) / "s.wav", Path(d) / "s.raw"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        subprocess.run(["sox", str(wav), "-D", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        "-t", "raw", str(raw)], check=True)
        return raw.read_bytes()


def _turn_latencies(server: DevServer, audio: bytes, n: int) -> list[float]:
    """Seconds from speech_stopped arriving to the first reply audio arriving, speech synthesised afresh."""
    out = []
    with Probe(server.url) as p:
        p.expect("session.created")
        for _ in range(n):
            server.tts._cache.clear()  # measure espeak-ng too, as a first answer would
            p.append(audio)
            p.expect("input_audio_buffer.speech_stopped", timeout=20)
            t0 = time.perf_counter()
            p.expect("response.audio.delta", timeout=20)
            out.append(time.perf_counter() - t0)
            p.expect("response.done", timeout=60)
    return out


def _stream_speed(server: DevServer) -> float:
    """Seconds of reply audio per wall-clock second, for the long story."""
    with Probe(server.url) as p:
        p.expect("session.created")
        p.send({"type": "session.update", "session": {"turn_detection": None}})
        p.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me a story"}]}})
        p.send({"type": "response.create"})
        first = p.expect("response.audio.delta", timeout=20)
        t0 = time.perf_counter()
        events = p.collect_until("response.done", timeout=60)
        wall = time.perf_counter() - t0
    audio = sum(len(base64.b64decode(e["delta"])) for e in [first] + events if e["type"] == "response.audio.delta")
    return audio / 2 / RATE / wall


def _recognition_cpu(audio: bytes) -> float:
    """CPU seconds per audio second of the input path: decode, energy VAD, grammar recognition."""
    script = Script.default()
    recognizer = Recognizer(script.phrases, script.prefixes)
    vad = EnergyVad(RATE)
    pcm = np.frombuffer(audio, dtype="<i2")
    t0 = time.process_time()
    for _ in range(3):
        recognizer.begin(RATE)
        for i in range(0, len(pcm), 480):
            frame = np.frombuffer(audio[2 * i: 2 * i + 960], dtype="<i2")
            vad.feed(frame)
            recognizer.feed(frame)
        recognizer.finish()
    return (time.process_time() - t0) / (3 * len(pcm) / RATE)


def rows() -> list[Row]:
    phrase = _speech("what time is it")
    turn = bytes(RATE) + phrase + bytes(RATE)
    with DevServer() as server:
        lat = _turn_latencies(server, turn, 7)
        speed = _stream_speed(server)
    cpu = _recognition_cpu(_speech("hey jarvis tell me a story") * 4)
    return [
        Row("end of turn -> first reply audio, median", f"{median(lat) * 1000:.0f} ms", "<= 300 ms",
            median(lat) <= 0.3),
        Row("reply audio streamed, x real time", f"{speed:.1f} x", ">= 5 x", speed >= 5),
        Row("VAD + recognition CPU per audio second", f"{cpu:.3f} s", "<= 0.05", cpu <= 0.05),
    ]
