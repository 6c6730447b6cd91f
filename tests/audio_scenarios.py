"""Scenarios that open real PortAudio streams; each runs in a child process (fixtures_audio).

Every function returns a JSON-able dict of what it observed; the tests assert on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.resample import StreamResampler
from agent.audio.settings import AudioSettings


def noise(n: int, seed: int, amp: int = 12000) -> np.ndarray:
    return np.random.default_rng(seed).integers(-amp, amp, n, dtype=np.int16)


def find(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Index where needle starts in haystack (matching its first 64 samples, then all), or -1."""
    head = needle[:64]
    hits = np.flatnonzero(haystack[:len(haystack) - len(head) + 1] == head[0])
    for i in hits:
        if np.array_equal(haystack[i:i + len(head)], head):
            return int(i) if np.array_equal(haystack[i:i + len(needle)], needle) else -2
    return -1


def nothing_lost(haystack: np.ndarray, needle: np.ndarray) -> bool:
    """needle is in haystack sample for sample, but for digital silence inserted into it (a
    device that ran dry on a loaded machine plays silence, then goes on): no sample lost."""
    head = needle[:64]
    for i in np.flatnonzero(haystack == head[0]):
        if np.array_equal(haystack[i:i + len(head)], head):
            window = haystack[i:i + len(needle) + 2 * SAMPLE_RATE]
            sounding = window[window != 0]
            wanted = needle[needle != 0]
            return bool(np.array_equal(sounding[:len(wanted)], wanted))
    return False


def wait_until(cond, timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


# -- ALSA file plugin: exact, not paced ---------------------------------------------------------


def capture_exact(folder: str, rate: int, channels: int, channel: int) -> dict:
    """The microphone on the file card: what it delivers against the infile's chosen channel."""
    from agent.audio.capture import PyAudioMicrophone

    capture = Path(folder) / "capture.raw"
    voice = noise(rate, 1)  # one second
    lanes = [voice if c == channel else noise(rate, 10 + c) for c in range(channels)]
    np.stack(lanes, axis=1).astype("<i2").tofile(capture)
    mic = PyAudioMicrophone(AudioSettings(input_rate=rate, input_channels=channels,
                                          input_channel=channel))
    frames: list[np.ndarray] = []
    mic.start(frames.append)
    want = SAMPLE_RATE // FRAME_SAMPLES
    wait_until(lambda: len(frames) >= want, 10)
    mic.stop()
    got = np.concatenate(frames[:want])
    if rate == SAMPLE_RATE:
        expect = voice
    else:  # the same streaming resampler, fed in device periods
        rs = StreamResampler(rate, SAMPLE_RATE)
        period = rate * 20 // 1000
        expect = np.concatenate([rs.process(voice[i:i + period])
                                 for i in range(0, len(voice), period)])
    n = min(len(got), len(expect)) - 480  # the tail depends on what follows the infile
    return {"rate": mic.rate, "frames": len(frames), "sizes": sorted({len(f) for f in frames}),
            "exact": bool(np.array_equal(got[:n], expect[:n])),
            "max_diff": int(np.max(np.abs(got[:n].astype(int) - expect[:n]))), "compared": n}


def playback_exact(folder: str, rate: int, channels: int) -> dict:
    """The speaker on the file card: what reached playback.raw against what was played."""
    from agent.audio.playback import PyAudioSpeaker

    spk = PyAudioSpeaker(AudioSettings(output_rate=rate, output_channels=channels, volume=100))
    a, b = noise(12000, 2), noise(7001, 3)
    # Two writes back to back: the file card is not paced, so its callback spins, and a write
    # that came late under load would meet an underrun (a gap) and break the exact comparison.
    spk.play(a, "a")
    spk.play(b, "b")
    drained = wait_until(spk.drained, 10)
    positions = {"a": spk.played_samples("a"), "b": spk.played_samples("b")}
    spk.close()
    raw = np.fromfile(Path(folder) / "playback.raw", dtype="<i2").reshape(-1, channels)
    lanes_equal = all(np.array_equal(raw[:, 0], raw[:, c]) for c in range(channels))
    mono = raw[:, 0]
    played = np.concatenate((a, b))
    out = {"rate": spk.rate, "drained": drained, "positions": positions,
           "lanes_equal": bool(lanes_equal)}
    if rate == SAMPLE_RATE:
        out["found_at"] = find(mono, played)
    else:
        # the same streaming resampler, fed a 24 kHz period at a time
        rs = StreamResampler(SAMPLE_RATE, rate)
        step = SAMPLE_RATE * 20 // 1000
        ref = np.concatenate([rs.process(played[i:i + step])
                              for i in range(0, len(played), step)]).astype(int)
        start = max(0, int(np.flatnonzero(np.abs(mono) > 1000)[0]) - 2000)
        region = mono[start:start + len(ref) + 4000].astype(float)
        lag = int(np.argmax(np.correlate(region, ref[:2000].astype(float), "valid")))
        got = mono[start + lag:start + lag + len(ref)].astype(int)
        out["max_diff"] = int(np.max(np.abs(got - ref)))
        out["compared"] = len(ref)
    return out


def swallowing_device(folder: str) -> dict:
    """The speaker's callback, called by hand with the times PortAudio gave in the daemon when
    PulseAudio swallowed a restart's blocks (a call each 1.2 ms, the delay staying 0), then
    with the delay growing again: what it gave the device, what it took from the queue, and
    what it told the echo canceller's reference."""
    from agent.audio.playback import PyAudioSpeaker

    spk = PyAudioSpeaker(AudioSettings(output_rate=SAMPLE_RATE, volume=100))
    spk.close()  # (no device thread from here on: the callback is ours to call)
    ring, delta = spk.buffer.reference, noise(4800, 9, 8000)
    out: list[np.ndarray] = []

    def call(now: float, delay: float) -> None:
        data, _ = spk._callback(None, 480, {"current_time": now,
                                            "output_buffer_dac_time": now + delay}, 0)
        out.append(np.frombuffer(data, dtype="<i2").copy())

    for i in range(3):  # a device playing in real time (the file card is not: never watched)
        call(99.0 + 0.02 * i, 0.04)
    spk._restarted()  # (what a restart does between the stream's abort and its start)
    spk.play(delta, "d")
    out.clear()

    call(100.0, 0.0)
    call(100.0012, 0.0)
    during = {"queued": spk.buffer.queued_samples, "written": ring.written, "runs": ring.runs}
    for i in range(2, 30):
        call(100.0 + 0.0012 * i, 0.0)
    after = {"queued": spk.buffer.queued_samples, "written": ring.written, "runs": ring.runs,
             "paused": ring.paused}
    for i in range(12):
        call(100.04 + 0.02 * i, 0.039)
    pcm = np.concatenate(out)
    return {"during": during, "after": after, "swallowed": spk.swallowed,
            "silent_while_swallowing": not pcm[480:30 * 480].any(),
            "rest_of_delta_at": find(pcm[30 * 480:], delta[480:]), "runs_at_end": ring.runs,
            "delta_first_block_at": find(pcm[:480], delta[:480])}


def devices_listing(config_path: str) -> dict:
    """`mira-agent devices` on the file card with a config."""
    import contextlib
    import io

    from agent.audio.devices import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(config_path)
    return {"status": status, "text": buf.getvalue()}


# -- PulseAudio null sink: real time ------------------------------------------------------------


class MonitorTap:
    """Records the sink's monitor with PortAudio's ADC times mapped to time.monotonic()."""

    def __init__(self):
        import pyaudio

        from agent.audio.portaudio import HOST
        self.blocks: list[tuple[float, bytes]] = []
        self._continue = pyaudio.paContinue
        idx = HOST.default_index("input")
        self.stream = HOST.open("input", idx, SAMPLE_RATE, 1, 240, self._callback)

    def _callback(self, data, n, info, status):
        now = time.monotonic()
        adc, cur = info.get("input_buffer_adc_time", 0), info.get("current_time", 0)
        self.blocks.append((now - (cur - adc) if adc and cur else now - n / SAMPLE_RATE, data))
        return None, self._continue

    def close(self) -> None:
        from agent.audio.portaudio import HOST
        HOST.close(self.stream)

    def signal(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples, and the monotonic time each entered the monitor."""
        pcm = np.frombuffer(b"".join(d for _, d in self.blocks), dtype="<i2")
        times = np.concatenate([t + np.arange(len(d) // 2) / SAMPLE_RATE for t, d in self.blocks])
        return pcm, times


def pulse_server(folder: str):
    """Start a null-sink server and point this process's ALSA at it (before any PortAudio)."""
    import os

    from fixtures_audio import PulseServer
    srv = PulseServer(Path(folder)).start()
    os.environ.update(srv.env)
    return srv


def speaker_running(spk, timeout: float = 10) -> bool:
    """Wait for the device to take audio at real-time pace (a null sink starts in ~2 s)."""
    def flowing():
        start = spk.buffer.reference.written
        time.sleep(0.1)
        return spk.buffer.reference.written - start >= 0.08 * SAMPLE_RATE
    return wait_until(flowing, timeout, 0)


def pulse_playback(folder: str) -> dict:
    """Real-time playback into the null sink, watched through its monitor: exactness,
    played-position error, and flush timing."""
    from agent.audio import playback

    playback.REST_AFTER_S = 3600.0  # positions of a running stream (resting: pulse_wake)
    srv = pulse_server(folder)
    try:
        spk = playback.PyAudioSpeaker(AudioSettings(output_rate=24000, volume=100))
        tap = MonitorTap()
        out: dict = {"running": speaker_running(spk), "latency": spk._latency}
        # the monitor's first blocks come in a burst with rough times: let it settle
        wait_until(lambda: tap.blocks, 5)
        time.sleep(1.0)
        reads: list[tuple[float, int]] = []
        spk.buffer.on_played = lambda block: reads.append((time.monotonic(), spk.buffer.flushes))
        # 1. two seconds of item a, positions sampled while it plays
        a = noise(2 * SAMPLE_RATE, 4)
        t0 = time.monotonic()
        for i in range(0, len(a), 2400):  # deltas of 100 ms, as fast as a server sends them
            spk.play(a[i:i + 2400], "a")
        samples = []
        while not spk.drained() and time.monotonic() - t0 < 10:
            samples.append((time.monotonic(), spk.played_samples("a")))
            time.sleep(0.01)
        out["play_s"] = time.monotonic() - t0
        # 2. item b, flushed after 0.5 s
        b = noise(3 * SAMPLE_RATE, 5)
        spk.play(b, "b")
        time.sleep(0.5)
        before = spk.buffer.flushes  # the speaker's own flush at open counts too
        t_flush = time.monotonic()
        flushed = spk.flush()["b"]
        t_flushed = time.monotonic()
        time.sleep(0.4)
        spk.close()
        tap.close()
        pcm, times = tap.signal()
        # where a and b entered the sink: their samples are found exactly in the monitor
        at_a = find(pcm, a)
        out["a_exact"] = at_a >= 0
        if at_a >= 0:
            true_at = lambda t: float(np.clip(np.interp(t, times[at_a:at_a + len(a)],  # noqa: E731
                                                        np.arange(len(a))), 0, len(a)))
            # PulseAudio rewinds its (and its monitor's) buffer when a stream's audio starts,
            # so the monitor's clock is not a truth in the first ~150 ms: judged after 200 ms
            steady = [(t, p) for t, p in samples
                      if times[at_a] + 0.2 < t < times[at_a + len(a) - 1] - 0.05]
            errs = [(p - true_at(t)) / SAMPLE_RATE * 1000 for t, p in steady]
            start = [abs(p - true_at(t)) / SAMPLE_RATE * 1000 for t, p in samples
                     if t <= times[at_a] + 0.2]
            out["position_error_ms"] = {"median": float(np.median(np.abs(errs))),
                                        "max": float(np.max(np.abs(errs))),
                                        "p95": float(np.percentile(np.abs(errs), 95)),
                                        "mean": float(np.mean(errs)), "n": len(errs),
                                        "start_max": float(max(start, default=0))}
        at_b = find(pcm, b[:4800])
        if at_b >= 0:
            same = pcm[at_b:at_b + len(b)] == b[:len(pcm) - at_b]
            heard_b = int(np.argmin(same)) if not same.all() else int(same.size)
            last_loud = at_b + heard_b + int(np.flatnonzero(pcm[at_b + heard_b:] != 0)[-1]) \
                if (pcm[at_b + heard_b:] != 0).any() else at_b + heard_b
            true_flush = float(np.interp(t_flush, times[at_b:at_b + heard_b], np.arange(heard_b)))
            out["flush"] = {
                "reported": flushed, "heard": heard_b, "true_at_flush": true_flush,
                "position_error_ms": (flushed - true_flush) / SAMPLE_RATE * 1000,
                # from the call: the device may take its silence before flush() returns
                "to_device_ms": 1000 * (min(t for t, f in reads if f > before) - t_flush),
                "to_silence_at_sink_ms": 1000 * (times[last_loud] - t_flush),
                "call_ms": 1000 * (t_flushed - t_flush)}
        out["underruns"] = spk.underruns
        return out
    finally:
        srv.stop()


def pulse_round_trip(folder: str) -> dict:
    """Speaker -> null sink -> monitor -> microphone, both real-time PortAudio streams at
    24 kHz: the microphone's frames hold the played audio sample for sample; volume 50 %
    plays a quarter of the amplitude."""
    from agent.audio.capture import PyAudioMicrophone
    from agent.audio.playback import PyAudioSpeaker

    srv = pulse_server(folder)
    try:
        spk = PyAudioSpeaker(AudioSettings(output_rate=24000, volume=100))
        mic = PyAudioMicrophone(AudioSettings(input_rate=24000))
        frames: list[np.ndarray] = []
        mic.start(frames.append)
        running = speaker_running(spk) and wait_until(lambda: len(frames) > 5, 5)
        a = noise(SAMPLE_RATE, 6)
        spk.play(a, "a")
        wait_until(spk.drained, 5)
        spk.volume = 50
        b = np.full(4800, 8000, dtype=np.int16)
        spk.play(b, "b")
        wait_until(spk.drained, 5)
        time.sleep(0.3)
        mic.stop()
        spk.close()
        got = np.concatenate(frames)
        at = find(got, a)
        quiet = got[np.flatnonzero(got == 2000)]
        return {"running": running, "sizes": sorted({len(f) for f in frames}),
                "exact_at": at, "quarter_samples": int(len(quiet)), "overflows": mic.overflows,
                "mic_rate": mic.rate}
    finally:
        srv.stop()


def pulse_device_loss(folder: str) -> dict:
    """Kill the sound server under a running microphone and speaker, start it again: both
    report the loss, reopen with backoff, and work again."""
    from agent.audio.capture import PyAudioMicrophone
    from agent.audio.playback import PyAudioSpeaker

    srv = pulse_server(folder)
    events: list[tuple[float, str, bool]] = []
    opts = {"first_backoff_s": 0.25, "max_backoff_s": 1.0}
    try:
        spk = PyAudioSpeaker(AudioSettings(output_rate=24000),
                             on_state=lambda ok, m: events.append((time.monotonic(), "speaker", ok)),
                             **opts)
        mic = PyAudioMicrophone(AudioSettings(input_rate=24000),
                                on_state=lambda ok, m: events.append((time.monotonic(), "mic", ok)),
                                **opts)
        frames: list[float] = []
        mic.start(lambda f: frames.append(time.monotonic()))
        out: dict = {"running": speaker_running(spk) and wait_until(lambda: len(frames) > 3, 5)}
        t_kill = time.monotonic()
        srv.stop()
        lost = wait_until(lambda: {(w, ok) for _, w, ok in events} >= {("speaker", False),
                                                                         ("mic", False)}, 8)
        out["lost_after_s"] = max(t for t, _, ok in events if not ok) - t_kill if lost else None
        out["lost_flags"] = [spk.lost, mic.lost]
        time.sleep(1.0)  # the server stays away for a while: reopening keeps failing, quietly
        t_back = time.monotonic()
        srv.start()
        back = wait_until(lambda: sum(ok for _, _, ok in events) >= 2, 15)
        out["back_after_s"] = max(t for t, _, ok in events if ok) - t_back if back else None
        n = len(frames)
        out["mic_flows_again"] = wait_until(lambda: len(frames) > n + 10, 10)
        # (idle since before the loss, the reopened stream may already rest: that is running)
        out["speaker_runs_again"] = spk.resting or speaker_running(spk)
        spk.play(noise(4800, 7), "after")
        out["speaker_plays_again"] = wait_until(lambda: spk.played_samples("after") == 4800, 5)
        out["events"] = [[w, ok] for _, w, ok in events]
        out["reopens"] = [spk._keeper.reopens, mic._keeper.reopens]
        mic.stop()
        spk.close()
        return out
    finally:
        srv.stop()


def open_error(input_device: str) -> dict:
    """Starting a microphone on a device that does not exist: what it raises (nothing, since an
    absent device is a state) and what it tells its listener."""
    from agent.audio.capture import PyAudioMicrophone

    told: list[tuple[bool, str]] = []
    mic = PyAudioMicrophone(AudioSettings(input_device=input_device),
                            on_state=lambda ok, m: told.append((ok, m)))
    try:
        mic.start(lambda f: None)
    except Exception as e:  # the type and sentence are the result
        return {"error": type(e).__name__, "message": str(e)}
    lost = mic.lost
    mic.stop()
    return {"error": None, "told": told, "lost": lost}


def first_sample_timer(spk) -> tuple[list[float], list[float]]:
    """(pending, delays): append time.monotonic() to pending as a delta is played; the seconds
    until the device took its first audible sample land in delays."""
    pending: list[float] = []
    delays: list[float] = []

    def on_played(block):
        if pending and block.any():
            delays.append(time.monotonic() - pending.pop())

    spk.buffer.on_played = on_played
    return pending, delays


def pulse_delta_latency(folder: str, rate: int, count: int) -> dict:
    """Seconds from play() of a delta, at an idle moment, to the device callback taking its
    first sample (the wait for the next period included)."""
    from agent.audio.playback import PyAudioSpeaker

    srv = pulse_server(folder)
    try:
        spk = PyAudioSpeaker(AudioSettings(output_rate=rate, volume=100))
        running = speaker_running(spk)
        period = spk.settings.period_ms / 1000
        pending, delays = first_sample_timer(spk)
        rng = np.random.default_rng(0)
        burst = np.full(240, 1000, dtype=np.int16)
        for i in range(count):
            time.sleep(0.03 + rng.uniform(0, period))  # the last burst and its fade are out
            pending.append(time.monotonic())
            spk.play(burst, f"delta{i}")
            wait_until(lambda: not pending, 1, 0.002)
        spk.close()
        return {"running": running, "rate": spk.rate, "period_s": period, "delays": delays}
    finally:
        srv.stop()


def pulse_wake(folder: str, count: int, rest_after_s: float = 0.3) -> dict:
    """A speaker whose stream rests (after rest_after_s idle here, 5 s in the daemon), woken
    by a delta `count` times, the sink's monitor read meanwhile (as the daemon's microphone
    does): seconds from play() to the device taking the delta's first sample (two periods
    of silence go ahead of it: a restarted stream's first ms are lost on PulseAudio), whether
    the stream rested before each, and whether each delta reached the sink whole (nothing
    lost; silence inserted by an underrun on a loaded machine aside)."""
    from agent.audio import playback

    playback.REST_AFTER_S = rest_after_s
    srv = pulse_server(folder)
    try:
        spk = playback.PyAudioSpeaker(AudioSettings(output_rate=24000, volume=100))
        tap = MonitorTap()
        running = speaker_running(spk) or spk.resting  # (it may rest before it is seen running)
        pending, delays = first_sample_timer(spk)
        rested, deltas = [], []
        for i in range(count):
            rested.append(wait_until(lambda: spk.resting, rest_after_s + 3))
            delta = noise(4800, 40 + i, 8000)
            deltas.append(delta)
            pending.append(time.monotonic())
            spk.play(delta, f"wake{i}")
            wait_until(lambda: not pending and spk.drained(), 3)
        time.sleep(0.3)
        spk.close()
        tap.close()
        pcm, _ = tap.signal()
        return {"running": running, "rested": rested, "delays": delays,
                "whole": [nothing_lost(pcm, d) for d in deltas],
                "restarts_at_once": spk.restarts_at_once, "period_s": spk.settings.period_ms / 1000}
    finally:
        srv.stop()


def capture_overflow(folder: str) -> dict:
    """A microphone whose consumer is slower than the device: input is dropped and counted,
    the warning is logged once (not per chunk), and frames keep coming."""
    import logging

    from agent.audio.capture import PyAudioMicrophone

    np.zeros(48000 * 10, dtype="<i2").tofile(Path(folder) / "capture.raw")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("agent.audio.capture")
    logger.addHandler(Keep())
    logger.setLevel(logging.WARNING)
    mic = PyAudioMicrophone(AudioSettings(input_rate=48000))
    times: list[float] = []

    def slow(frame):
        times.append(time.monotonic())
        time.sleep(0.002)  # the file card is not paced: any consumer is too slow for it

    mic.start(slow)
    time.sleep(1.5)
    n = len(times)
    time.sleep(0.3)
    mic.stop()
    return {"dropped": mic.dropped_chunks, "warnings": [r for r in records if "lost input" in r],
            "still_flowing": len(times) > n}
