"""Faults (issue 7): recovery after the server returns, frames lost in outages, 10,000 hostile server
messages, and a soak of 500 back-to-back conversations. Real sockets on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.server import serve

from agent import config as config_mod
from agent.audio.base import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Microphone
from agent.audio.wavfile import WavSpeaker
from agent.conversation import Conversation
from agent.state import State
from benchmarks.common import Row, median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from wire_scenarios import FaultRound  # noqa: E402
from fault_proxy import (FUZZ_KINDS, FaultProxy, Watch, dithered, hostile_server_frame,  # noqa: E402
                         input_frames, retune, send_hostile)

KEY = "sk-mira-bench"
RECOVERY_TRIALS = 7
OUTAGE_S = 2.0
FUZZ_MESSAGES = 10_000
SOAK_CONVERSATIONS = 500


def _quiet() -> None:
    for name in ("websockets", "agent"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# -- recovery and frames lost ----------------------------------------------------------------

def _recovery(tmp: Path) -> tuple[list[float], int, int]:
    """Outages of OUTAGE_S while listening (server gone: reset, then refused), one conversation.

    Returns the seconds from the server's return to the session resumed, per trial; the frames
    captured that never reached a server; and the frames out of order (within a session, or a
    session skipping ahead of the last; a session may start with the last one's unconfirmed tail).
    """
    from agent.devserver import DevServer
    from harness import KEY, Run

    pcm = dithered(np.zeros(int((RECOVERY_TRIALS * (OUTAGE_S + 3.5) + 6) * SAMPLE_RATE), np.int16))
    took = []
    with DevServer(api_key=KEY) as server, FaultProxy(server.port) as proxy:
        # stable_s short so each trial starts from a reset backoff, as after a long quiet session;
        # base_s and cap_s stay the shipped defaults.
        run = Run(tmp, proxy, pcm, reconnect={"stable_s": 1.0})
        retune(run, server={"url": proxy.url})
        watch = Watch(run)
        with run:
            ready = watch.wait(State.LISTENING)
            for _ in range(RECOVERY_TRIALS):
                time.sleep(max(0.0, ready.at + 1.3 - time.monotonic()))
                proxy.refuse()
                proxy.cut()
                dropped = watch.wait(State.RECONNECTING, after=ready.at)
                time.sleep(max(0.0, dropped.at + OUTAGE_S - time.monotonic()))
                proxy.listen()
                back = time.monotonic()
                ready = watch.wait(State.LISTENING, after=dropped.at, timeout=60)
                took.append(ready.at - back)
            time.sleep(0.3)
            run.conversation.stop()
            run.join(10)
        per_session = [input_frames(record, pcm) for record in server.sessions]
    seen = FaultRound(got=[i for s in per_session for i in s], per_session=per_session)
    lost = watch.frames - len(set(seen.got))
    return took, max(0, lost), seen.disorder


# -- 10,000 hostile server messages ----------------------------------------------------------

class _Ticks:
    def __init__(self):
        self.at: list[float] = []

    def kick(self) -> None:
        self.at.append(time.monotonic())


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(k in message for k in ("bad message", "reported an error", "reply ended with status")):
            self.lines += 1


def _fuzz(tmp: Path) -> dict:
    from agent.demo import user_audio
    from agent.devserver import DevServer
    from agent.devserver.script import Entry, Script
    from harness import KEY, Run

    rng = random.Random(2024)
    weights = [10, 12, 10, 8, 8, 0.05, 6, 4, 14, 10, 6]  # oversize rarely: each one costs a reconnect
    frames = [hostile_server_frame(rng, rng.choices(FUZZ_KINDS, weights)[0]) for _ in range(FUZZ_MESSAGES)]
    hello = user_audio([(0.2, "Hello.")], trailing_s=2.0)
    pcm = dithered(np.concatenate([np.zeros(2 * SAMPLE_RATE, np.int16)] + [hello] * 14))
    script = Script(entries=(Entry("hello", reply="Hi."),), fallback="Pardon?", tool_reply="Done.")
    counter = _Counter()
    conv_log = logging.getLogger("agent.conversation")
    saved = conv_log.level, conv_log.propagate
    conv_log.setLevel(logging.WARNING)   # counted here, printed nowhere
    conv_log.propagate = False
    conv_log.addHandler(counter)
    crashes: list = []
    hook, threading.excepthook = threading.excepthook, crashes.append
    result = {"crashes": 0, "stall": 0.0, "settled": False, "next works": False}
    try:
        with DevServer(api_key=KEY, script=script) as server:
            run = Run(tmp, server, pcm, session={"follow_up_s": 1.0},
                      reconnect={"base_s": 0.2, "stable_s": 0.5})
            ticks = run.conversation._watchdog = _Ticks()
            watch = Watch(run)
            with run:
                watch.wait(State.LISTENING)
                start = time.monotonic()
                for frame in frames:
                    deadline = time.monotonic() + 10
                    while send_hostile(server, frame) == 0 and time.monotonic() < deadline:
                        time.sleep(0.01)
                sent = time.monotonic()
                result["send_s"] = sent - start
                deadline, since = time.monotonic() + 60, None
                while time.monotonic() < deadline and not result["settled"]:
                    c = run.conversation
                    if c.state in (State.IDLE, State.LISTENING) and c.speaker.drained():
                        since = since or time.monotonic()
                        result["settled"] = time.monotonic() - since > 1.0
                    else:
                        since = None
                    time.sleep(0.02)
                times = [t for t in ticks.at if t >= start]
                result["stall"] = float(max(np.diff([start, *times, time.monotonic()])))
                heard = sum(t.transcript == "hello" for s in server.sessions for t in s.turns)
                if run.conversation.state is State.IDLE:
                    run.conversation.trigger("button")
                try:
                    server.recorder.wait_for(lambda: sum(t.transcript == "hello" for s in server.sessions
                                                         for t in s.turns) > heard, timeout=20)
                    server.recorder.wait_for(lambda: any(r.text == "Hi." and r.status == "completed"
                                                         for r in server.last_session.replies), timeout=10)
                    result["next works"] = True
                except TimeoutError:
                    pass
                result["alive"] = run.thread.is_alive()
                run.conversation.stop()
                run.join(10)
            result["bad_frames"] = run.conversation.counters["bad_frames"]
    finally:
        threading.excepthook = hook
        conv_log.removeHandler(counter)
        conv_log.setLevel(saved[0])
        conv_log.propagate = saved[1]
    result["crashes"] = len(crashes) + (0 if result.get("alive") else 1) + (run.code != 0)
    result["log_lines"] = counter.lines
    return result


# -- soak: 500 conversations against a scripted peer, faster than real time -------------------

class _FastMic(Microphone):
    """A microphone that captures `speedup` times faster than a sound card (one frame a ms)."""

    def __init__(self, speedup: float = 20.0):
        self._period = FRAME_MS / 1000 / speedup
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0

    def start(self, on_frame, on_end=None) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="fast-mic", daemon=True)
        self._thread.start()

    def _run(self, on_frame) -> None:
        rng = np.random.default_rng(3)
        pool = [(rng.standard_normal(FRAME_SAMPLES) * 300).astype(np.int16) for _ in range(64)]
        start = time.monotonic()
        while not self._stop.is_set():
            self.frames += 1
            on_frame(pool[self.frames % 64].copy())
            wait = start + self.frames * self._period - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _Peer:
    """A minimal scripted Mira peer: after 10 appends it ends the turn and answers with 0.2 s of audio."""

    def __init__(self):
        self.sessions = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="soak-peer", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._done = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, subprotocols=["mira-realtime.v1"],
                         ping_interval=None) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/realtime"
            self._ready.set()
            await self._done

    async def _handle(self, ws) -> None:
        self.sessions += 1
        n = self.sessions
        send = lambda kind, **f: ws.send(json.dumps({"type": kind, "event_id": f"e{n}", **f}))  # noqa: E731
        audio = base64.b64encode((np.sin(np.arange(4800) / 5) * 3000).astype("<i2").tobytes()).decode()
        await send("session.created", session={"id": f"sess_{n}"})
        appends = 0
        try:
            async for message in ws:
                if json.loads(message)["type"] != "input_audio_buffer.append":
                    continue
                appends += 1
                if appends != 10:
                    continue
                item, resp, out = f"item_u{n}", f"resp_{n}", f"item_a{n}"
                await send("input_audio_buffer.speech_started", audio_start_ms=0, item_id=item)
                await send("input_audio_buffer.speech_stopped", audio_end_ms=200, item_id=item)
                await send("conversation.item.input_audio_transcription.completed", item_id=item,
                           content_index=0, transcript=f"turn {n}")
                await send("response.created", response={"id": resp, "status": "in_progress"})
                for _ in range(2):
                    await send("response.audio.delta", response_id=resp, item_id=out, output_index=0,
                               content_index=0, delta=audio)
                await send("response.audio.done", response_id=resp, item_id=out)
                await send("response.audio_transcript.done", response_id=resp, item_id=out, transcript="ok")
                await send("response.done", response={"id": resp, "status": "completed", "output": [],
                                                      "usage": {"total_tokens": 3}})
        except Exception:
            pass

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._done.set_result, None)
        self._thread.join(5)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _soak(tmp: Path) -> dict:
    peer = _Peer()
    config = config_mod.parse({
        "server": {"url": peer.url}, "session": {"follow_up_s": 0.0},
        "audio": {"backend": "file", "input_file": "unused.wav", "output_file": "unused.wav"},
        "wake": {"engine": "none"},
    }, tmp / "agent.toml")
    mic, speaker = _FastMic(), WavSpeaker(tmp / "soak.wav", realtime=False)
    conv = Conversation(config, api_key=KEY, mic=mic, speaker=speaker)
    thread = threading.Thread(target=conv.run, name="soak-conversation", daemon=True)
    thread.start()
    marks = {}
    start = time.monotonic()
    done = 0
    try:
        while done < SOAK_CONVERSATIONS:
            deadline = time.monotonic() + 10
            while conv.state is not State.IDLE:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"soak: conversation {done} stuck in {conv.state.value}")
                time.sleep(0.001)
            if done == 50:  # warmed up: caches, pools and lazy imports are in place
                gc.collect()
                marks["start"] = (_rss_kb(), threading.active_count(), _fds())
            opened = conv.counters["sessions"]
            conv.trigger("button")
            deadline = time.monotonic() + 10
            while conv.counters["sessions"] == opened or conv.state is not State.IDLE:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"soak: conversation {done} did not finish ({conv.state.value})")
                time.sleep(0.001)
            done += 1
        wall = time.monotonic() - start
        gc.collect()
        time.sleep(0.2)
        marks["end"] = (_rss_kb(), threading.active_count(), _fds())
    finally:
        conv.stop()
        thread.join(10)
        speaker.close()
        peer.close()
    simulated = mic.frames * FRAME_MS / 1000
    return {"wall": wall, "simulated": simulated, "rss_growth_mb": (marks["end"][0] - marks["start"][0]) / 1024,
            "threads": (marks["start"][1], marks["end"][1]), "fds": (marks["start"][2], marks["end"][2]),
            "sessions": peer.sessions, "conversations": done}


# -- the table -------------------------------------------------------------------------------

def rows() -> list[Row]:
    _quiet()
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for sub in ("recovery", "fuzz", "soak"):
            (base / sub).mkdir()
        took, lost, disorder = _recovery(base / "recovery")
        out += [
            Row(f"recovery after the server returns ({OUTAGE_S:g} s outage), median of {len(took)}",
                f"{median(took):.2f} s", "<= 1 s", median(took) <= 1.0),
            Row("recovery after the server returns, worst", f"{max(took):.2f} s", "-", None),
            Row(f"mic frames lost in {len(took)} outages of {OUTAGE_S:g} s (< buffer)", f"{lost}", "0", lost == 0),
            Row("mic frames out of order (within a session, or skipped between two)", f"{disorder}", "0",
                disorder == 0),
        ]
        fz = _fuzz(base / "fuzz")
        hangs = int(fz["stall"] > 1.0) + int(not fz["settled"])
        out += [
            Row(f"{FUZZ_MESSAGES:,} fuzzed server messages: crashes", f"{fz['crashes']}", "0", fz["crashes"] == 0),
            Row(f"{FUZZ_MESSAGES:,} fuzzed server messages: hangs", f"{hangs}", "0", hangs == 0),
            Row("  longest stall of the conversation loop", f"{fz['stall'] * 1000:.0f} ms", "<= 1000 ms",
                fz["stall"] <= 1.0),
            Row("  next spoken conversation after the fuzz works", "yes" if fz["next works"] else "no", "yes",
                fz["next works"]),
            Row("  warning lines logged for them (once a minute per kind)", f"{fz['log_lines']}", "<= 64",
                fz["log_lines"] <= 64),
        ]
        sk = _soak(base / "soak")
        factor = sk["simulated"] / sk["wall"]
        grew = sk["rss_growth_mb"]
        out += [
            Row(f"soak: {sk['conversations']} back-to-back conversations", f"{sk['wall']:.1f} s wall",
                "-", None),
            Row("soak: speed against real time (mic audio / wall)", f"{factor:.1f}x", "> 1x", factor > 1.0),
            Row("soak: RSS growth after warm-up", f"{grew:.2f} MB", "<= 5 MB", grew <= 5.0),
            Row("soak: threads (after warm-up -> end)", "{} -> {}".format(*sk["threads"]), "no growth",
                sk["threads"][1] <= sk["threads"][0]),
            Row("soak: open fds (after warm-up -> end)", "{} -> {}".format(*sk["fds"]), "no growth",
                sk["fds"][1] <= sk["fds"][0]),
        ]
    return out
