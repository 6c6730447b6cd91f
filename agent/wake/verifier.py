"""The owner's voice verifier: a second opinion, asked only when a wake-word model fires.

openWakeWord's custom-verifier idea: a logistic regression on the very embeddings the model
scored (its window of 16 x 96 features), trained on a few clips of the owner saying the wake
word against negative speech (the windows the project ships, made by agent.wake.negatives, plus
any of the owner's own). It runs only after the base model has fired, so the idle cost does not
grow, and it can only turn a detection down.

The regression is written here in numpy (standardised features, L2 penalty, balanced classes,
Nesterov gradient descent): scikit-learn would bring about 50 MB of wheels to a speaker for
these 40 lines, and its pickles execute code when loaded. The file is a numpy .npz without
pickles: one entry per model, each tied to the digest of the model file and of the embedding
model it was trained on, so a verifier never judges features it was not made for.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.wake.detector import WakeEngineError

FORMAT = 1
DATA = Path(__file__).parent / "data"
NEGATIVES = DATA / "verifier-negatives.npz"


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of a file's SHA-256: which model (or embedding) file this is."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()[:16]


def windows(embeddings: np.ndarray, width: int) -> np.ndarray:
    """Every run of `width` consecutive embeddings (steps x 96) as one window (n x width x 96)."""
    n = len(embeddings) - width + 1
    if n <= 0:
        return np.zeros((0, width, embeddings.shape[1]), np.float32)
    return np.lib.stride_tricks.sliding_window_view(embeddings, width, axis=0).transpose(0, 2, 1)


@dataclass(frozen=True)
class Entry:
    """The verifier of one model."""

    weights: np.ndarray
    """One weight per standardised feature (width x 96, flattened)."""
    bias: float
    mean: np.ndarray
    """Feature means of the training windows (standardisation)."""
    scale: np.ndarray
    """Feature standard deviations of the training windows."""
    model_digest: str
    """file_digest of the model file it was trained with."""
    positives: int
    """Owner's clips it was trained on."""

    @property
    def width(self) -> int:
        return len(self.weights) // 96

    def probability(self, window: np.ndarray) -> float:
        """How likely the window (width x 96) is the owner saying the wake word, 0..1."""
        z = float(((np.ravel(window) - self.mean) / self.scale) @ self.weights + self.bias)
        return 1.0 / (1.0 + np.exp(-z)) if z > -500 else 0.0


class Verifier:
    """Entries by model name, with the threshold a probability must pass."""

    def __init__(self, entries: dict[str, Entry], features_digest: str, *, threshold: float = 0.5,
                 path: Path | None = None):
        self.entries = dict(entries)
        self.features_digest = features_digest
        self.threshold = threshold
        self.path = path

    def accepts(self, model: str, window: np.ndarray) -> bool:
        """Whether a detection by `model` on this window stands (models without an entry always do)."""
        entry = self.entries.get(model)
        return entry is None or entry.probability(window) > self.threshold

    def save(self, path: str | Path) -> None:
        """Write the file (atomically: a crash leaves the old one)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT),
                                         "features_digest": np.array(self.features_digest),
                                         "models": np.array(sorted(self.entries))}
        for name, e in self.entries.items():
            arrays.update({f"{name}.weights": e.weights.astype(np.float32),
                           f"{name}.bias": np.array(e.bias, np.float64),
                           f"{name}.mean": e.mean.astype(np.float32),
                           f"{name}.scale": e.scale.astype(np.float32),
                           f"{name}.model_digest": np.array(e.model_digest),
                           f"{name}.positives": np.array(e.positives)})
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, *, threshold: float = 0.5) -> "Verifier":
        """Read a verifier file; a WakeEngineError names the file and says what to do."""
        path = Path(path)
        again = "make it again with `mira-agent enroll`, or set [wake] verifier = \"\""
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise WakeEngineError(f"wake verifier {path} does not exist: {again}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise WakeEngineError(f"wake verifier {path} is not a verifier file ({e}): {again}") from None
        try:
            if int(data["format"]) != FORMAT:
                raise WakeEngineError(f"wake verifier {path} has format {int(data['format'])}, "
                                      f"this version reads {FORMAT}: {again}")
            entries = {}
            for name in map(str, data["models"]):
                weights = data[f"{name}.weights"].astype(np.float32)
                mean, scale = data[f"{name}.mean"], data[f"{name}.scale"]
                if weights.ndim != 1 or len(weights) % 96 or mean.shape != weights.shape \
                        or scale.shape != weights.shape or not np.all(scale > 0):
                    raise ValueError(f"the arrays of {name} do not fit together")
                entries[name] = Entry(weights, float(data[f"{name}.bias"]), mean, scale,
                                      str(data[f"{name}.model_digest"]), int(data[f"{name}.positives"]))
            return cls(entries, str(data["features_digest"]), threshold=threshold, path=path)
        except (KeyError, ValueError, TypeError) as e:
            raise WakeEngineError(f"wake verifier {path} is damaged ({e}): {again}") from None

    def check_fits(self, digests: dict[str, str], features_digest: str) -> None:
        """Refuse a verifier made for other model files (a WakeEngineError naming the file)."""
        where = f"wake verifier {self.path}" if self.path else "the wake verifier"
        if self.features_digest != features_digest:
            raise WakeEngineError(f"{where} was made with another openWakeWord embedding model: "
                                  f"make it again with `mira-agent enroll`")
        unknown = [m for m in self.entries if m not in digests]
        if len(unknown) == len(self.entries):
            raise WakeEngineError(f"{where} is for {', '.join(sorted(self.entries))}, not for the wake "
                                  f"word(s) configured ({', '.join(digests)}): enroll for "
                                  f"{next(iter(digests))} with `mira-agent enroll`")
        for name, entry in self.entries.items():
            if name in digests and digests[name] != entry.model_digest:
                raise WakeEngineError(f"{where} was made for another {name} model file: make it "
                                      f"again with `mira-agent enroll`")


# -- training ------------------------------------------------------------------------------------

def _logistic(x: np.ndarray, y: np.ndarray, c: float, iterations: int) -> tuple[np.ndarray, float]:
    """Weights and bias minimising C * weighted log loss + |w|^2 / 2 (balanced class weights)."""
    n, d = x.shape
    pos = y > 0.5
    sample_w = np.where(pos, n / (2 * max(1, pos.sum())),
                        n / (2 * max(1, (~pos).sum()))).astype(np.float32)  # float64 would copy x
    # gradient step from a bound on the loss's curvature (power iteration on x^T x)
    v = np.ones(d, np.float32) / np.sqrt(d)
    for _ in range(20):
        v = x.T @ (x @ v)
        v /= np.linalg.norm(v) + 1e-12
    curvature = 0.25 * c * float(sample_w.max()) * float(np.linalg.norm(x @ v)) ** 2 + 1.0
    step = 1.0 / curvature
    w = np.zeros(d, np.float32)
    b = 0.0
    w_prev, b_prev = w.copy(), b
    for k in range(1, iterations + 1):
        mom = (k - 1) / (k + 2)
        wl, bl = w + mom * (w - w_prev), b + mom * (b - b_prev)
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ wl + bl, -50, 50)))
        r = np.float32(c) * sample_w * (p - y)
        w_prev, b_prev = w, b
        w = (wl - step * (x.T @ r + wl)).astype(np.float32)
        b = bl - step * float(r.sum())
    return w, float(b)


def train(positives: np.ndarray, negatives: np.ndarray, *, model_digest: str, clips: int,
          c: float = 0.01, iterations: int = 400) -> Entry:
    """An Entry from windows of the owner saying the wake word (n x width x 96) and negative windows."""
    if len(positives) == 0 or len(negatives) == 0:
        raise WakeEngineError("a verifier needs both the owner's wake-word windows and negative ones")
    x = np.concatenate([positives.reshape(len(positives), -1),
                        negatives.reshape(len(negatives), -1)]).astype(np.float32)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.float32)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    weights, bias = _logistic((x - mean) / scale, y, c, iterations)
    return Entry(weights, bias, mean.astype(np.float32), scale.astype(np.float32), model_digest, clips)


def shipped_negatives(width: int) -> np.ndarray:
    """The negative windows the project ships (agent/wake/data), width embeddings each."""
    with np.load(NEGATIVES, allow_pickle=False) as z:
        embeddings, ends = z["embeddings"].astype(np.float32), z["ends"]
    starts = np.concatenate([[0], ends[:-1]])
    return np.concatenate([windows(embeddings[s:e], width) for s, e in zip(starts, ends)])
