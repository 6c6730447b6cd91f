"""The streaming path up (frame -> encode -> base64 -> JSON -> socket) and down (delta -> sink)."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.server import serve

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.codec import StreamDecoder, StreamEncoder
from agent.audio.wavfile import WavSpeaker
from agent.realtime import events as ev
from agent.realtime.client import RealtimeConnection
from agent.realtime.settings import ServerSettings
from benchmarks.common import Row, median, percentile

UP_SECONDS = 120          # audio streamed up per run
DOWN_DELTAS = 400         # deltas timed on the way down
DELTA_MS = 40


class _Peer:
    """A loopback server: swallows what it gets, and on request sends timestamped audio deltas."""

    def __init__(self):
        self.sent_at: dict[int, float] = {}
        self.received = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._done: asyncio.Future | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self):
        self._done = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, subprotocols=["mira-realtime.v1"],
                         max_size=None) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            self._ready.set()
            await self._done

    async def _handle(self, ws):
        await ws.send(json.dumps({"type": "session.created", "event_id": "e", "session": {}}))
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "input_audio_buffer.append":
                self.received += 1
            elif event["type"] == "response.create":
                pcm = (np.sin(np.arange(SAMPLE_RATE * DELTA_MS // 1000) / 7) * 8000).astype("<i2")
                delta = base64.b64encode(pcm.tobytes()).decode()
                for i in range(DOWN_DELTAS):
                    self.sent_at[i] = time.perf_counter()
                    await ws.send(json.dumps({"type": "response.audio.delta", "event_id": f"e{i}",
                                              "response_id": "r", "item_id": str(i), "output_index": 0,
                                              "content_index": 0, "delta": delta}))
                    await asyncio.sleep(0.002)

    def close(self):
        self._loop.call_soon_threadsafe(self._done.set_result, None)


def _connect(peer: _Peer, on_event) -> RealtimeConnection:
    conn = RealtimeConnection(ServerSettings(url=peer.url), "bench-key", on_event)
    conn.open()
    return conn


def _up(peer: _Peer) -> float:
    """CPU seconds of the sending thread per second of audio streamed."""
    got: queue.SimpleQueue = queue.SimpleQueue()
    conn = _connect(peer, got.put)
    got.get(timeout=5)
    rng = np.random.default_rng(1)
    frames = [(rng.standard_normal(FRAME_SAMPLES) * 3000).astype(np.int16) for _ in range(50)]
    encoder = StreamEncoder("pcm16")
    n = UP_SECONDS * 1000 // 20
    t0 = time.thread_time()
    for i in range(n):
        conn.send(ev.append(encoder.encode(frames[i % 50])))
    cpu = time.thread_time() - t0
    deadline = time.monotonic() + 10
    while peer.received < n and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.close()
    return cpu / UP_SECONDS


def _down(peer: _Peer) -> list[float]:
    """ms from a delta leaving the server to its samples being in the sink, through the real parts."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    conn = _connect(peer, q.put)
    q.get(timeout=5)
    done: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        speaker = WavSpeaker(Path(tmp) / "out.wav", realtime=False)
        decoder = StreamDecoder("pcm16")
        conn.send(ev.response_create())
        while len(done) < DOWN_DELTAS:
            event = q.get(timeout=10)  # the conversation thread's queue
            if isinstance(event, ev.AudioDelta):
                speaker.play(decoder.decode(event.audio), event.item_id)
                done[int(event.item_id)] = time.perf_counter()
        speaker.close()
    conn.close()
    return [(done[i] - peer.sent_at[i]) * 1000 for i in range(DOWN_DELTAS)]


def rows() -> list[Row]:
    peer = _Peer()
    try:
        cpu = _up(peer)
        lat = _down(peer)
    finally:
        peer.close()
    p50, p99 = median(lat), percentile(lat, 99)
    return [
        Row("streaming up: CPU s per audio s (pcm16 frame->socket)", f"{cpu:.4f}", "<= 0.01", cpu <= 0.01),
        Row("delta at socket -> samples in sink, median", f"{p50:.2f} ms", "-", None),
        Row("delta at socket -> samples in sink, p99", f"{p99:.2f} ms", "<= 2 ms", p99 <= 2.0),
    ]
