"""Wake word: detection rate in noise, false accepts per hour, CPU of the idle path (issue 4).

The corpus is made with espeak-ng once and cached under .bench/wake/ (audio only; every figure is
measured afresh each run). Positives are "hey jarvis, <command>" in 15 voices at 3 speeds, clean
and in pink or white noise at 10 dB SNR. Negatives are about 2 h of speech without the wake word:
licence prose, user commands (with sound-alikes such as "play some jazz") and the assistant's own
long replies, with room noise at 20 dB SNR. Each condition is one continuous stream fed in 20 ms
frames to the real detector, as the daemon does, through two front ends:

- "mic": the microphone as captured (echo cancelling off or unavailable);
- "NS": agent.audio.echo.EchoCanceller with nothing playing, i.e. WebRTC's noise suppression and
  high-pass filter, which is what the daemon's detector hears when [echo] is on (the default).

The negatives go through the NS front end only (the daemon's default), which keeps a run near
3 minutes on 2 cores; BENCH_WAKE_MIC_NEGATIVES=1 adds them through the bare microphone (+2 min).
"""

from __future__ import annotations

import glob
import itertools
import math
import multiprocessing
import os
import random
import subprocess
import tempfile
import time
import wave
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soxr

from benchmarks.common import Row, median, percentile

RATE = 24000
FRAME = 480
VOICES = ["en-us", "en-gb", "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en+m1", "en+m2", "en+m3",
          "en+m4", "en+m5", "en+m7", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc"]
SPEEDS = [130, 150, 170]
COMMANDS = ["what time is it", "turn on the kitchen lights"]
CONDITIONS = [("clean", None, "pink"), ("10 dB pink", 10, "pink"), ("10 dB white", 10, "white")]
FRONTS = ("mic", "NS")
NEGATIVE_FRONTS = ("NS", "mic") if os.environ.get("BENCH_WAKE_MIC_NEGATIVES") == "1" else ("NS",)
GAP_S = 2.5  # silence between utterances: longer than the 2 s refractory period
NEGATIVE_MINUTES = 140  # of text at 150 words a minute: about 2.05 h of speech with its pauses
NEGATIVE_BATCHES = 12
THRESHOLDS = (0.5, 0.3)  # the default, and a more sensitive setting
REFRACTORY_S = 2.0
CACHE = Path(__file__).resolve().parent.parent / ".bench" / "wake"
ROOMS = ["kitchen", "living room", "bedroom", "garden", "hall"]
USER = ["what time is it", "turn off the {room} lights", "set a timer for {n} minutes",
        "what is the weather like tomorrow", "play some jazz in the {room}", "how far is the moon",
        "add coffee to my shopping list", "hey, can you hear me", "stop", "never mind",
        "remind me to call my mother at {h}", "how many grams are in a pound", "turn the volume down",
        "what is on my calendar today", "is it going to rain in the {room}", "open the garage door",
        "tell me a joke", "who wrote pride and prejudice", "what is {n} times {h}", "pause the music",
        "dim the {room} lights to {n} percent", "when does the bakery close", "wake me up at {h} thirty",
        "what's the capital of australia", "how do you spell necessary", "skip this song",
        "call the office", "how long do I boil an egg", "cancel the timer", "good night"]
# The assistant's replies: what the speaker itself says, often for half a minute at a time.
REPLIES = [
    "It is {n} past {h} in the afternoon.", "I set a timer for {n} minutes.",
    "The weather today is sunny with a high of {n} degrees.", "Your next meeting starts at {h} o'clock.",
    "I turned off the lights in the {room}.", "Sure, playing some music in the {room}.",
    "There are {n} items on your shopping list: milk, bread, apples and coffee.",
    "The timer for the {room} is done.", "I could not find anything about that, sorry.",
    "Good morning! It is {h} o'clock and the sky is clear.",
    "Here is a simple recipe for pancakes. Mix two cups of flour with a spoon of sugar, a pinch of "
    "salt and two teaspoons of baking powder. Whisk in two eggs and a cup and a half of milk, then "
    "let the batter rest for ten minutes.",
    "Tomorrow will start cloudy, with light rain in the morning. By the afternoon the clouds clear "
    "and the temperature reaches {n} degrees. The wind is calm, so it is a good evening for a walk.",
    "The moon is about three hundred and eighty four thousand kilometres away from the earth. Light "
    "takes a little more than one second to travel that far.",
    "I have added eggs, butter and {n} apples to your shopping list. You now have {h} things on it. "
    "Would you like me to read them out?",
    "Your calendar for today has three events: a call with the bank at {h}, lunch with Sarah at one, "
    "and the dentist at half past four.",
    "Sure. Here is a joke: why did the scarecrow win an award? Because he was outstanding in his field.",
    "Pride and Prejudice was written by Jane Austen and published in eighteen thirteen. It follows "
    "Elizabeth Bennet and her family in the English countryside.",
    "To boil an egg, bring a pot of water to the boil, lower the egg in with a spoon, and cook it for "
    "six minutes for a soft yolk or ten minutes for a hard one.",
    "The bakery on the main street closes at six today and opens again at seven tomorrow morning.",
    "I am sorry, I did not catch that. Could you say it again, a little more slowly?",
    "The capital of Australia is Canberra. Many people guess Sydney or Melbourne, but Canberra was "
    "chosen as a compromise between the two.",
    "Playing your evening playlist in the {room}. The first song is a quiet piano piece, followed by "
    "some soft jazz.",
    "Okay, I will remind you to call your mother at {h} o'clock. I will ring twice, five minutes apart.",
    "There are four hundred and fifty three grams in one pound, so two pounds is a little over nine "
    "hundred grams.",
    "The garage door is now open. Remember that it closes by itself after {n} minutes.",
    "Good night. I have turned off the lights in the {room}, locked the front door and set your "
    "alarm for seven.",
    "Traffic on your way to work is light this morning. The drive should take about {n} minutes, a "
    "little less than usual.",
    "The football match ended two to one. The home team scored the winning goal in the last minute.",
    "Necessary is spelled N E C E S S A R Y. One collar and two sleeves: one c and two s.",
    "Here is the news. The city council approved the new park on the river bank, and work starts in "
    "the spring. In sport, the local team won again.",
    "A cup of rice needs about two cups of water. Bring it to the boil, cover it, and let it simmer "
    "for eighteen minutes.",
    "Your package has been delivered and left at the front door at {h} twenty.",
    "The living room is at {n} degrees. I have set the heating to twenty one, and it will be warm in "
    "about half an hour.",
    "Jupiter is the largest planet in our solar system. More than a thousand earths would fit inside it.",
    "I have cancelled the timer for the {room}. You have no other timers running.",
]


# -- the corpus --------------------------------------------------------------------------------------

def speak(text: str, voice: str, wpm: int) -> np.ndarray:
    """espeak-ng speech as 24 kHz float samples (int16 scale)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", path, text], check=True,
                       capture_output=True)
        with wave.open(path) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            rate = w.getframerate()
    return soxr.resample(raw.astype(np.float32), rate, RATE).astype(np.float64)


def noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    k = np.arange(len(spectrum))
    k[0] = 1
    return np.fft.irfft(spectrum / np.sqrt(k), n)


def active_power(x: np.ndarray) -> float:
    return float(np.mean(x[np.abs(x) > 0.01 * np.abs(x).max()] ** 2))


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def negative_texts() -> list[str]:
    """About NEGATIVE_MINUTES of text with no wake word: licence prose, user commands, replies."""
    rng = random.Random(4)
    words: list[str] = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="ignore") as f:
                words += f.read().split()
    fill = lambda t: t.format(n=rng.randint(2, 59), h=rng.randint(1, 12), room=rng.choice(ROOMS))  # noqa: E731
    chunks: list[str] = []
    spoken = 0
    while spoken < NEGATIVE_MINUTES * 150:
        kind = len(chunks) % 5  # 2 parts prose, 1 part user commands, 2 parts the assistant's replies
        if kind in (0, 3) and words:
            start = rng.randrange(max(1, len(words) - 120))
            chunk = " ".join(words[start:start + 120])
        elif kind == 1:
            chunk = ". ".join(fill(rng.choice(USER)) for _ in range(12)) + "."
        else:
            chunk = " ".join(fill(rng.choice(REPLIES)) for _ in range(5))
        assert "jarvis" not in chunk.lower()
        chunks.append(chunk)
        spoken += len(chunk.split())
    return chunks


def negative_batches() -> list[list[tuple[str, str, int]]]:
    voice_cycle = itertools.cycle(itertools.product(VOICES[:6] + ["en-us"], [150, 175]))
    chunks = [(t, *next(voice_cycle)) for t in negative_texts()]
    return [chunks[i::NEGATIVE_BATCHES] for i in range(NEGATIVE_BATCHES)]


def corpus_dir() -> Path:
    """The cache folder of this corpus: named for everything that shapes it (texts, voices, espeak)."""
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    spec = repr((VOICES, SPEEDS, COMMANDS, CONDITIONS, GAP_S, negative_batches(), version, 1))
    return CACHE / f"{zlib.crc32(spec.encode()):08x}"


def _save(path: Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)


def make_positives(voice: str, path: Path) -> None:
    """One voice, every speed and command, one stream per condition, with where each utterance is."""
    utterances, wake_ends = [], []
    for wpm, command in itertools.product(SPEEDS, COMMANDS):
        utterances.append(speak(f"hey jarvis, {command}", voice, wpm))
        wake = speak("hey jarvis", voice, wpm)
        wake_ends.append(int(np.nonzero(np.abs(wake) > 300)[0][-1]) + 1)
    gap = int(GAP_S * RATE)
    starts, pos = [], gap
    for u in utterances:
        starts.append(pos)
        pos += len(u) + gap
    clean = np.zeros(pos)
    for s, u in zip(starts, utterances):
        clean[s:s + len(u)] = u
    level = np.mean([active_power(u) for u in utterances])
    streams = {}
    for i, (name, snr, kind) in enumerate(CONDITIONS):
        stream = clean
        if snr is not None:
            rng = np.random.default_rng(zlib.crc32(f"{voice}|{name}".encode()))
            n = noise(len(clean), kind, rng)
            stream = clean + n * np.sqrt(level / 10 ** (snr / 10) / np.mean(n ** 2))
        streams[f"c{i}"] = to_int16(stream)
    _save(path, starts=np.array(starts), lens=np.array([len(u) for u in utterances]),
          wake_ends=np.array(wake_ends), **streams)


def make_negatives(chunks: list[tuple[str, str, int]], path: Path) -> None:
    """Speech without the wake word, 0.7 s pauses, room noise (pink) at 20 dB SNR."""
    rng = np.random.default_rng(zlib.crc32(chunks[0][0].encode()))
    parts = []
    for text, voice, wpm in chunks:
        parts += [speak(text, voice, wpm), np.zeros(int(0.7 * RATE))]
    speech = np.concatenate(parts)
    n = noise(len(speech), "pink", rng)
    _save(path, stream=to_int16(speech + n * np.sqrt(active_power(speech) / 10 ** 2 / np.mean(n ** 2))))


def _make(job: tuple) -> None:
    kind, arg, path = job
    (make_positives if kind == "pos" else make_negatives)(arg, path)


def corpus(pool: ProcessPoolExecutor) -> tuple[list[Path], list[Path]]:
    """The cached corpus files (positives per voice, negative batches), made where missing."""
    folder = corpus_dir()
    folder.mkdir(parents=True, exist_ok=True)
    pos = [folder / f"pos-{v}.npz" for v in VOICES]
    neg = [folder / f"neg-{i:02d}.npz" for i in range(NEGATIVE_BATCHES)]
    jobs = [("pos", v, p) for v, p in zip(VOICES, pos)] + \
           [("neg", b, p) for b, p in zip(negative_batches(), neg)]
    list(pool.map(_make, [j for j in jobs if not j[2].exists()]))
    return pos, neg


# -- workers (one process each) ----------------------------------------------------------------------

def _detector(threshold: float = 0.5, refractory_s: float = REFRACTORY_S):
    from agent.wake.openwakeword import OpenWakeWordDetector
    return OpenWakeWordDetector("hey_jarvis", threshold=threshold, trigger_level=1,
                                refractory_s=refractory_s)


def _noise_suppressor():
    """The daemon's echo canceller with nothing playing: WebRTC noise suppression + high-pass."""
    from agent.audio.echo import EchoCanceller
    from agent.audio.playout import ReferenceRing
    return EchoCanceller(ReferenceRing(RATE))


def _scores(stream: np.ndarray, front: str) -> tuple[list[tuple[int, float]], float]:
    """(sample position in this stream, score) of every 80 ms window scoring over 0.01, and the CPU
    seconds the front end took.

    A detector with a threshold near zero and no refractory period fires on every such window, so
    one pass gives what the daemon's detector (trigger level 1) would do at any threshold.
    """
    detector = _detector(threshold=0.01, refractory_s=0.0)
    ns = _noise_suppressor() if front == "NS" else None
    out, front_cpu = [], 0.0
    for i in range(0, len(stream) - FRAME + 1, FRAME):
        frame = stream[i:i + FRAME]
        if ns is not None:
            t0 = time.process_time()
            frame = ns.process(frame)
            front_cpu += time.process_time() - t0
        hit = detector.process(frame)
        if hit is not None:
            out.append((hit.sample_offset, hit.score))
    detector.close()
    if ns is not None:
        ns.close()
    return out, front_cpu


def triggers(scores: list[tuple[int, float]], threshold: float) -> list[int]:
    """Where a trigger-level-1 detector with the refractory period fires at this threshold."""
    fired: list[int] = []
    for offset, score in scores:
        if score > threshold and (not fired or offset >= fired[-1] + REFRACTORY_S * RATE):
            fired.append(offset)
    return fired


def positives_job(job: tuple[Path, str]) -> dict:
    """One voice through one front end, every condition: hits per threshold and detection delays."""
    path, front = job
    data = np.load(path)
    out: dict = {}
    for i, (name, _, _) in enumerate(CONDITIONS):
        scores, _ = _scores(data[f"c{i}"], front)
        for threshold in THRESHOLDS:
            offsets = triggers(scores, threshold)
            hits, delays = 0, []
            for s, n, w in zip(data["starts"], data["lens"], data["wake_ends"]):
                inside = [o for o in offsets if s <= o < s + n + RATE]
                hits += bool(inside)
                if inside:
                    delays.append((inside[0] - s - w) / RATE * 1000)
            out[name, threshold] = (hits, len(data["starts"]))
            if i == 0 and threshold == THRESHOLDS[0]:
                out["delays"] = delays
    return out


def negatives_job(job: tuple[Path, str]) -> tuple[dict, float, float]:
    """One negative batch through one front end: ({threshold: false accepts}, seconds, front CPU s)."""
    path, front = job
    stream = np.load(path)["stream"]
    scores, front_cpu = _scores(stream, front)
    return {t: len(triggers(scores, t)) for t in THRESHOLDS}, len(stream) / RATE, front_cpu


# -- statistics and the idle path --------------------------------------------------------------------

def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a Poisson mean after seeing k events."""
    def cdf(lam: float) -> float:
        term = total = math.exp(-lam)
        for i in range(1, k + 1):
            term *= lam / i
            total += term
        return total
    lo, hi = 0.0, 10.0 + 10 * k
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi


def idle_cpu(seconds: float = 30.0, vad_gate: bool = False) -> float:
    """CPU seconds per audio second: 24 kHz frames -> soxr -> openWakeWord, on quiet room noise."""
    from agent.wake.openwakeword import OpenWakeWordDetector
    rng = np.random.default_rng(1)
    room = to_int16(noise(int(seconds * RATE), "pink", rng) * 60)
    detector = OpenWakeWordDetector("hey_jarvis", vad_gate=vad_gate)
    frames = [room[i:i + FRAME] for i in range(0, len(room) - FRAME + 1, FRAME)]
    t0 = time.process_time()
    for frame in frames:
        detector.process(frame)
    used = time.process_time() - t0
    detector.close()
    return used / seconds


def rows() -> list[Row]:
    cpu = idle_cpu()
    gated_cpu = idle_cpu(vad_gate=True)
    # spawn, not fork: another benchmark in this process may have started livekit's runtime,
    # which cannot cross a fork
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pos_files, neg_files = corpus(pool)
        neg = {f: pool.map(negatives_job, [(p, f) for p in neg_files]) for f in NEGATIVE_FRONTS}
        pos = {f: list(pool.map(positives_job, [(p, f) for p in pos_files])) for f in FRONTS}
        neg = {f: list(r) for f, r in neg.items()}
    out = []
    for front in FRONTS:
        for threshold in THRESHOLDS:
            for name, snr, _ in CONDITIONS:
                hits = sum(p[name, threshold][0] for p in pos[front])
                total = sum(p[name, threshold][1] for p in pos[front])
                target, ok = (">= 95 %", hits / total >= 0.95) if snr == 10 else ("-", None)
                out.append(Row(f"{front}, threshold {threshold}: detected, {name} ({total} utterances)",
                               f"{100 * hits / total:.1f} %", target, ok))
            if front not in neg:
                continue
            hours = sum(seconds for _, seconds, _ in neg[front]) / 3600
            k = sum(n[threshold] for n, _, _ in neg[front])
            out.append(Row(f"{front}, threshold {threshold}: false accepts/h (count; 95 % upper bound) "
                           f"in {hours:.2f} h of speech, 20 dB noise",
                           f"{k / hours:.2f} ({k}; {poisson_upper(k) / hours:.2f})", "<= 0.5",
                           k / hours <= 0.5))
        delays = [d for p in pos[front] for d in p["delays"]]
        out.append(Row(f"{front}: detection point after the wake word ends, median / p90",
                       f"{median(delays):.0f} / {percentile(delays, 90):.0f} ms", "-", None))
    out.append(Row("idle path CPU s per audio s (24k frame -> soxr -> oww)", f"{cpu:.4f}", "<= 0.03",
                   cpu <= 0.03))
    out.append(Row("idle path CPU s per audio s, VAD gate on (the default)", f"{gated_cpu:.4f}",
                   "<= 0.008", 0 < gated_cpu <= 0.008))
    ns_cpu = sum(c for _, _, c in neg["NS"]) / sum(s for _, s, _ in neg["NS"])
    out.append(Row("NS front end (echo canceller, idle) CPU s per audio s, on its own",
                   f"{ns_cpu:.4f}", "-", None))
    return out
