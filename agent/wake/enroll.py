"""`mira-agent enroll` and `mira-agent wake-test`: the owner's clips, their scores, a threshold, a verifier.

Both take the owner saying the wake word, as WAV files or recorded through the configured
microphone, and report the score each clip reached with every configured model and whether it
fires at the configured threshold, then suggest a threshold from that evidence. `enroll` also
trains the owner's voice verifier (agent.wake.verifier) for one model and stores it beside the
config, keeping any other model's entry in the same file.
"""

from __future__ import annotations

import os
import queue
import statistics
import time
from pathlib import Path

import numpy as np

from agent import config as config_mod
from agent.audio.base import SAMPLE_RATE
from agent.errors import ConfigError, MiraAgentError
from agent.wake.detector import WakeEngineError
from agent.wake.verifier import NEGATIVES, Verifier, shipped_negatives, train, windows

MIN_PEAK = 0.1          # a clip scoring below this never sounded like the wake word
MIN_CLIPS = 3           # fewer usable clips than this train no verifier
LEAD = int(1.3 * SAMPLE_RATE)   # silence before a clip: a whole window of context
TAIL = SAMPLE_RATE // 2
OFFSETS = (0, 640, 1280)        # 24 kHz shifts of each clip: other 80 ms step phases
DEFAULT_FILE = "wake-verifier.npz"


def _detector(cfg: config_mod.Config):
    from agent.wake.factory import wake_word_models
    from agent.wake.openwakeword import OpenWakeWordDetector
    wake = cfg.settings.wake
    if wake.engine != "openwakeword":
        raise ConfigError(f"wake.engine is {wake.engine!r}: clips are scored with openWakeWord "
                          f"models only (set [wake] engine = \"openwakeword\")")
    return OpenWakeWordDetector(wake_word_models(wake, cfg.base_dir), vad_gate=False)


def record(cfg: config_mod.Config, count: int, seconds: float, say: str, out=print) -> list[np.ndarray]:
    """`count` clips of `seconds` from the configured microphone, prompting before each."""
    from agent.audio.devices import open_microphone
    frames: queue.Queue = queue.Queue()
    ended = []
    mic = open_microphone(cfg.settings.audio, cfg.resolve)
    clips = []
    with mic:
        mic.start(frames.put, lambda: ended.append(True))
        try:
            for i in range(count):
                out(f"  {i + 1}/{count}: say \"{say}\" now ({seconds:g} s)")
                got, need = [], int(seconds * SAMPLE_RATE)
                deadline = time.monotonic() + seconds + 10
                while sum(map(len, got)) < need and time.monotonic() < deadline:
                    try:
                        got.append(frames.get(timeout=0.5))
                    except queue.Empty:
                        if ended:
                            break
                if not got:
                    raise MiraAgentError("the microphone gave no audio: check [audio] input_device "
                                         "with `mira-agent devices`")
                clips.append(np.concatenate(got))
                if ended and frames.empty():
                    break
        finally:
            mic.stop()
    return clips


def read_clips(paths: list[str]) -> list[np.ndarray]:
    from agent.audio.wavfile import read_wav
    return [read_wav(p) for p in paths]


def _padded(clip: np.ndarray, offset: int = 0) -> np.ndarray:
    return np.concatenate([np.zeros(LEAD + offset, np.int16), clip, np.zeros(TAIL, np.int16)])


def peaks(detector, clips: list[np.ndarray]) -> np.ndarray:
    """The highest score of each clip (rows) with each model (columns)."""
    return np.array([detector.analyse(_padded(c))[0].max(axis=0) for c in clips]).reshape(
        len(clips), len(detector.models))


def suggest_threshold(clip_peaks: list[float]) -> float:
    """A threshold under the owner's weakest clip with room for a tired voice, never below 0.2
    (false accepts climb steeply under it) nor above 0.7."""
    usable = [p for p in clip_peaks if p >= MIN_PEAK]
    if not usable:
        return 0.5
    return round(min(0.7, max(0.2, np.floor(0.8 * min(usable) * 20) / 20)), 2)


def report(detector, clips: list[np.ndarray], thresholds: dict[str, float], out=print) -> np.ndarray:
    """Print each clip's score per model and whether it fires; the suggestion per model."""
    table = peaks(detector, clips)
    width = max(len(m) for m in detector.models)
    for i, row in enumerate(table):
        cells = [f"{m:<{width}} {s:.2f} {'fires' if s > thresholds[m] else 'misses'}"
                 for m, s in zip(detector.models, row)]
        out(f"  clip {i + 1}: " + "; ".join(cells))
    for j, m in enumerate(detector.models):
        col = [float(x) for x in table[:, j]]
        fired = sum(s > thresholds[m] for s in col)
        out(f"{m}: {fired} of {len(col)} clips fire at threshold {thresholds[m]:g} (scores "
            f"{min(col):.2f}-{max(col):.2f}, median {statistics.median(col):.2f}); suggested "
            f"threshold {suggest_threshold(col):g}")
    return table


def _positive_windows(detector, model: str, clip: np.ndarray, threshold: float) -> np.ndarray:
    """Windows where the model scores like it does when it fires, from several step phases."""
    j = detector.models.index(model)
    width = detector.window_steps(model)
    found = []
    for offset in OFFSETS:
        scores, embeddings = detector.analyse(_padded(clip, offset))
        w = windows(embeddings, width)
        s = scores[width - 1:, j]
        found.append(w[s > 0.5 * threshold])
    return np.concatenate(found)


def train_verifier(detector, name: str, clips: list[np.ndarray], threshold: float,
                   negative_clips: list[np.ndarray] = (), out=print):
    """The verifier Entry of model `name` from the owner's clips (24 kHz), against the shipped
    negatives and the owner's own other speech; and the owner's windows it was trained on."""
    positives = np.concatenate([_positive_windows(detector, name, c, threshold) for c in clips])
    width = detector.window_steps(name)
    negatives = [shipped_negatives(width)[::2]]  # neighbours overlap 15 of 16 steps: every other
    negatives += [windows(detector.analyse(_padded(c))[1], width) for c in negative_clips]
    negatives = np.concatenate(negatives)
    out(f"training on {len(positives)} windows of your voice and {len(negatives)} negative ones")
    entry = train(positives, negatives, model_digest=detector.digests[name], clips=len(clips))
    return entry, positives


def _config(path: str) -> config_mod.Config:
    return config_mod.load(path)


def wake_test(config_path: str, wavs: list[str], *, count: int = 3, seconds: float = 3.0,
              out=print) -> int:
    """`mira-agent wake-test`: how the configured wake word(s) score on the owner's clips."""
    cfg = _config(config_path)
    with _detector(cfg) as detector:
        say = detector.models[0].replace("_", " ")
        clips = read_clips(wavs) if wavs else record(cfg, count, seconds, say, out)
        thresholds = dict(cfg.settings.wake.wake_words())
        thresholds = {Path(k).stem: v for k, v in thresholds.items()}
        report(detector, clips, thresholds, out)
        if cfg.settings.wake.verifier:
            _verifier_report(cfg, detector, clips, out)
    return 0


def _verifier_report(cfg, detector, clips, out) -> None:
    try:
        verifier = Verifier.load(cfg.resolve(cfg.settings.wake.verifier),
                                 threshold=cfg.settings.wake.verifier_threshold)
        detector.use_verifier(verifier)
    except WakeEngineError as e:
        out(f"verifier: {e}")
        return
    for name, entry in verifier.entries.items():
        if name not in detector.models:
            continue
        thr = {Path(k).stem: v for k, v in cfg.settings.wake.wake_words()}[name]
        accepted = total = 0
        for i, clip in enumerate(clips):
            fired = _positive_windows(detector, name, clip, 2 * thr)  # windows scoring over thr
            if len(fired):
                p = max(entry.probability(x) for x in fired)
                total += 1
                accepted += p > verifier.threshold
                out(f"  clip {i + 1}: verifier {p:.2f}: "
                    f"{'your voice' if p > verifier.threshold else 'turned down'}")
        out(f"verifier {verifier.path.name}: accepts {accepted} of the {total} clips on which "
            f"{name} fires")


def enroll(config_path: str, wavs: list[str], *, model: str | None = None, count: int = 5,
           seconds: float = 3.0, out_path: str | None = None, negative_wavs: list[str] = (),
           out=print) -> int:
    """`mira-agent enroll`: train the owner's verifier for one model and say how to use it."""
    cfg = _config(config_path)
    wake = cfg.settings.wake
    with _detector(cfg) as detector:
        name = model or detector.models[0]
        if name not in detector.models:
            raise ConfigError(f"--model {name} is not a configured wake word ({', '.join(detector.models)}): "
                              f"add it to [wake] models first")
        thresholds = {Path(k).stem: v for k, v in wake.wake_words()}
        if not wavs:
            out(f"Recording {count} clips through the configured microphone.")
        clips = read_clips(wavs) if wavs else record(cfg, count, seconds, name.replace("_", " "), out)
        table = report(detector, clips, thresholds, out)
        j = detector.models.index(name)
        usable = [c for c, row in zip(clips, table) if row[j] >= MIN_PEAK]
        for i, row in enumerate(table):
            if row[j] < MIN_PEAK:
                out(f"  clip {i + 1} never sounded like {name} (best score {row[j]:.2f}): left out")
        if len(usable) < MIN_CLIPS:
            raise MiraAgentError(f"only {len(usable)} of {len(clips)} clips sound like {name}; "
                                 f"{MIN_CLIPS} are needed: say the wake word clearly, close to "
                                 f"the microphone, and enroll again")
        entry, positives = train_verifier(detector, name, usable, thresholds[name],
                                          read_clips(negative_wavs), out)
        features = detector.features_digest
        path = Path(out_path) if out_path else cfg.base_dir / DEFAULT_FILE
        entries = {}
        if path.exists():
            try:
                old = Verifier.load(path)
                if old.features_digest == features:
                    entries = {k: v for k, v in old.entries.items() if k != name}
            except WakeEngineError:
                pass  # a damaged old file is replaced
        entries[name] = entry
        verifier = Verifier(entries, features, threshold=wake.verifier_threshold, path=path)
        _save(verifier, path, cfg.path)
        passed = sum(entry.probability(x) > verifier.threshold for x in positives)
        out(f"verifier for {name} written to {path} ({passed} of {len(positives)} training "
            f"windows of your voice pass it)")
        wanted = path.resolve()
        if not wake.verifier or cfg.resolve(wake.verifier).resolve() != wanted:
            shown = path.name if path.parent.resolve() == cfg.base_dir.resolve() else str(path)
            out(f"to use it, add under [wake] in {cfg.path}:  verifier = \"{shown}\"  then reload "
                f"the daemon (sudo systemctl reload mira-agent)")
        else:
            out("the config already names it: reload the daemon (sudo systemctl reload mira-agent)")
    return 0


def _save(verifier: Verifier, path: Path, config_path: Path | None) -> None:
    verifier.save(path)
    os.chmod(path, 0o640)  # a voiceprint of sorts: not for every user of the box
    if config_path is not None and os.geteuid() == 0:
        os.chown(path, -1, config_path.stat().st_gid)  # readable by the daemon's group, like the config


__all__ = ["enroll", "wake_test", "suggest_threshold", "NEGATIVES"]
