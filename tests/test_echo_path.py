"""The room's echo path kept across the daemon's restarts: saved when a reply ends with it
trusted, given back at the next start, so the first reply after a reboot finds its echo
within half a second instead of learning the room from nothing."""

import logging

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.audio.echo import LinearEcho, Realigner
from agent.audio.echo_path import EchoPathStore
from test_echo import N, Path, db, echo_of, room, scene, voices  # noqa: F401 (voices: fixture)

pytest.importorskip("livekit")

SAMPLES = LinearEcho.path_samples()


def _store(folder) -> EchoPathStore:
    return EchoPathStore.from_environment(SAMPLES, {"STATE_DIRECTORY": str(folder)})


def _first_reply_after_a_restart(path: Path, far: np.ndarray, mic: np.ndarray):
    """A new daemon's canceller: its speaker's stream rests, then plays the reply."""
    path.ring.pause()
    path.ec.process(np.zeros(N, np.int16))
    return path.run(far, mic)


def test_a_path_saved_reads_back_as_it_was_and_nothing_else_is_left(tmp_path):
    """save() writes $STATE_DIRECTORY/echo-path.npy whole; load() gives the same path."""
    h = np.random.default_rng(1).standard_normal(SAMPLES) * 0.01
    store = _store(tmp_path)
    assert store.load() is None
    store.save(h)
    assert list(tmp_path.iterdir()) == [tmp_path / "echo-path.npy"]
    assert np.allclose(_store(tmp_path).load(), h, atol=1e-7)


def test_without_a_state_directory_nothing_is_kept():
    """Run by hand (no StateDirectory=): the path is simply not kept."""
    store = EchoPathStore.from_environment(SAMPLES, {})
    store.save(np.zeros(SAMPLES))
    assert store.path is None and store.load() is None


@pytest.mark.parametrize("content", [b"not numpy", "short", "nan", "ints"])
def test_a_damaged_or_foreign_file_is_ignored_with_a_warning_naming_it(tmp_path, caplog, content):
    """Garbage, a path of another length, one with NaN or of integers: one warning naming the
    file and what happens instead; the canceller then learns the room afresh."""
    target = tmp_path / "echo-path.npy"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        bad = {"short": np.zeros(100, np.float32), "ints": np.zeros(SAMPLES, np.int16),
               "nan": np.full(SAMPLES, np.nan, np.float32)}[content]
        np.save(target, bad)
    with caplog.at_level(logging.WARNING):
        assert _store(tmp_path).load() is None
    assert any(str(target) in r.getMessage() and "learns the room afresh" in r.getMessage()
               for r in caplog.records)


def test_the_first_reply_after_a_restart_finds_the_path_the_last_run_learnt(tmp_path, voices):
    """A daemon learns the room over two replies and saves the path as the second ends; the
    next daemon (a new canceller, the echo now 20 ms later against its pairing) loads it and
    finds where its echo sits after 0.3 s of its first reply and the echo's 0.25 s: its gate
    is then 12 dB under the microphone (a user that much quieter than the echo interrupts),
    where a canceller learning the room from nothing still holds it over the microphone's
    own level (no voice over the reply can interrupt yet)."""
    story, user = voices
    saved = []
    first = Path(on_learnt=saved.append)
    far, mic, _ = scene(story, user, tail_s=1.0)
    first.run(far, mic)
    first.run(far, mic)
    assert saved and first.ec.model.trusted
    _store(tmp_path).save(saved[-1])

    d = round(0.020 * SAMPLE_RATE)
    lead = 10 * N
    far = np.r_[np.zeros(lead, np.int16), far]
    later = echo_of(far, np.r_[np.zeros(d), room(60)], -20.0)
    first_loud = next(k for k in range(len(far) // N) if db(far[k * N:(k + 1) * N]) > -60)
    found = int(Realigner.EARLY_S * SAMPLE_RATE / N) - 1 + int(Realigner.AFTER_S * SAMPLE_RATE / N) - 1
    mic_db = np.array([db(later[k * N:(k + 1) * N]) for k in range(len(later) // N)])
    window = slice(first_loud + found, first_loud + found + 10)

    loaded = Path(path=_store(tmp_path).load())
    _, _, gates, _ = _first_reply_after_a_restart(loaded, far, later)
    assert loaded.ec.realigned_by == [d]
    assert np.all(gates[:first_loud + found] == np.inf)
    assert np.all(gates[window] - mic_db[window] <= -12 + 0.01), gates[window] - mic_db[window]

    fresh = Path()
    _, _, gates, _ = _first_reply_after_a_restart(fresh, far, later)
    assert fresh.ec.realigned_by == []
    assert np.all(gates[window] - mic_db[window] >= 0), gates[window] - mic_db[window]


def test_the_daemon_s_canceller_starts_from_the_path_in_its_state_directory(tmp_path, monkeypatch):
    """open_echo_canceller (what the daemon calls) loads $STATE_DIRECTORY's path, so the model
    counts as learnt from the start, and saves there when a reply ends with it trusted."""
    from types import SimpleNamespace

    from agent.audio.echo import open_echo_canceller
    from agent.audio.playout import ReferenceRing
    from agent.config import EchoSettings

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    speaker = SimpleNamespace(reference=ReferenceRing(SAMPLE_RATE))
    with open_echo_canceller(EchoSettings(), speaker) as ec:
        assert not ec.model.learnt
    h, r = np.zeros(SAMPLES), room(60)[:SAMPLES]
    h[:len(r)] = r
    _store(tmp_path).save(h)
    with open_echo_canceller(EchoSettings(), speaker) as ec:
        assert ec.model.learnt and np.abs(ec.model.impulse()).max() > 0


def test_save_soon_writes_the_path_off_the_callers_thread(tmp_path):
    """What the canceller calls from the frame path returns at once; the file follows whole."""
    import threading
    import time

    store = _store(tmp_path)
    h = np.random.default_rng(2).standard_normal(SAMPLES) * 0.01
    store.save_soon(h)
    deadline = time.monotonic() + 10
    while store.load() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert np.allclose(store.load(), h, atol=1e-7)
    for t in [t for t in threading.enumerate() if t.name == "echo-path-save"]:
        t.join(5)
    assert list(tmp_path.iterdir()) == [tmp_path / "echo-path.npy"]  # no temporary file left
