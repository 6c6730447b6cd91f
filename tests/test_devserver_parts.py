"""The devserver's pure parts: G.711, the energy VAD, the script, config merging, recognition, the CLI."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from agent.devserver.asr import Recognizer
from agent.devserver.events import check_event, default_session, merge_session
from agent.devserver.script import Script
from agent.devserver.server import DevServer
from agent.devserver.tts import parse_wav
from agent.devserver.vad import EnergyVad, threshold_db
from agent.errors import ConfigError
from test_devserver import speech

RATE = 24000


def burst(level_dbfs: float, ms: int) -> np.ndarray:
    """A 300 Hz tone whose RMS is level_dbfs."""
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sqrt(2) * 32768 * 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def run_vad(vad: EnergyVad, pcm: np.ndarray, frame: int = 480) -> list[tuple[str, int]]:
    out = []
    for i in range(0, len(pcm), frame):
        out += [(e.kind, e.sample) for e in vad.feed(pcm[i:i + frame])]
    return out


def test_vad_pads_the_start_and_ends_after_the_silence_duration():
    """Speech at 1000-1500 ms: started at 1000 - padding, stopped at 1500 + silence_duration (samples)."""
    pcm = np.concatenate([silence(1000), burst(-20, 500), silence(1000)])
    got = run_vad(EnergyVad(RATE, 0.5, prefix_padding_ms=300, silence_duration_ms=400), pcm)
    assert got == [("started", 700 * 24), ("stopped", 1900 * 24)]
    got = run_vad(EnergyVad(RATE, 0.5, prefix_padding_ms=0, silence_duration_ms=200), pcm, frame=333)
    assert got == [("started", 1000 * 24), ("stopped", 1700 * 24)]


def test_vad_threshold_decides_what_is_speech():
    """A -40 dBFS voice is speech at threshold 0.3 (-45 dB) but not at 0.5 (-35 dB)."""
    assert threshold_db(0.5) == -35 and threshold_db(0.3) == -45
    pcm = np.concatenate([silence(200), burst(-40, 400), silence(800)])
    assert run_vad(EnergyVad(RATE, 0.5), pcm) == []
    assert [k for k, _ in run_vad(EnergyVad(RATE, 0.3), pcm)] == ["started", "stopped"]


def test_vad_bridges_pauses_shorter_than_the_silence_duration_and_ignores_clicks():
    """Two words 300 ms apart are one turn at silence 500 ms, two at 200 ms; a 20 ms click is no turn."""
    pcm = np.concatenate([silence(100), burst(-20, 300), silence(300), burst(-20, 300), silence(700)])
    assert len(run_vad(EnergyVad(RATE, 0.5, 0, 500), pcm)) == 2
    assert len(run_vad(EnergyVad(RATE, 0.5, 0, 200), pcm)) == 4
    click = np.concatenate([silence(100), burst(-10, 20), silence(800)])
    assert run_vad(EnergyVad(RATE, 0.5), click) == []


def test_vad_never_starts_a_turn_before_the_floor():
    """Padding stops at the last commit or clear (the floor)."""
    vad = EnergyVad(RATE, 0.5, prefix_padding_ms=300)
    vad.feed(silence(1000))
    vad.reset(floor=900 * 24)
    assert run_vad(vad, np.concatenate([burst(-20, 300), silence(600)]))[0] == ("started", 900 * 24)


def test_default_script_phrases_and_matching():
    """The default script knows its four phrases, ignores a wake-word prefix, and has a catch-all."""
    s = Script.default()
    assert s.phrases == ["what time is it", "tell me a story", "turn on the light", "hello"]
    assert s.match("Hey Jarvis, what time is it?").say == "what time is it"
    assert s.match("please tell me a story now").say == "tell me a story"
    assert s.match("turn on the light").calls[0].name == "set_light"
    assert s.match("open the pod bay doors") is None
    assert s.reply_to("open the pod bay doors").reply == s.fallback
    assert s.after_tools([("set_light", "ok"), ("x", "two")]) == "Done: ok Done: two"


def test_script_toml_errors_name_the_key(tmp_path):
    """A bad script file is a ConfigError naming the key; a good one loads."""
    f = tmp_path / "s.toml"
    f.write_text('[[phrases]]\nsay = "hi"\nreply = "yo"\ncalls = [{name = "x"}]\n')
    with pytest.raises(ConfigError, match=r"phrases\[0\].*exactly one"):
        Script.load(f)
    f.write_text('colour = "red"\n')
    with pytest.raises(ConfigError, match="colour"):
        Script.load(f)
    f.write_text('[[phrases]]\nsay = "lights off"\ncalls = [{name = "set_light", arguments = {on = false}}]\n')
    assert Script.load(f).match("lights off").calls[0].arguments_json == '{"on":false}'
    with pytest.raises(ConfigError, match="cannot read"):
        Script.load(tmp_path / "missing.toml")


def test_session_merge_is_partial_nested_and_all_or_nothing():
    """Nested turn_detection merges; null turns it off; one bad key leaves the config unchanged."""
    s0 = default_session("sess_1")
    s1, problem = merge_session(s0, {"turn_detection": {"threshold": 0.7}, "voice": "ash"})
    assert problem is None and s1["turn_detection"]["silence_duration_ms"] == 500
    assert s1["turn_detection"]["threshold"] == 0.7 and s0["turn_detection"]["threshold"] == 0.5
    s2, _ = merge_session(s1, {"turn_detection": None})
    assert s2["turn_detection"] is None
    s3, _ = merge_session(s2, {"turn_detection": {"silence_duration_ms": 900}})
    assert s3["turn_detection"]["threshold"] == 0.5  # back from null: defaults plus the update
    same, problem = merge_session(s1, {"voice": "sage", "output_audio_format": "mp3"})
    assert same is s1 and problem[0] == "invalid_value"


def test_check_event_types():
    """Known events with the right field types pass; the rest get a code."""
    assert check_event({"type": "input_audio_buffer.append", "audio": "AAAA"}) is None
    assert check_event({"type": "conversation.item.truncate", "item_id": "i", "content_index": 0,
                        "audio_end_ms": True})[0] == "invalid_type"
    assert check_event({"type": "x"})[0] == "invalid_event"
    assert check_event({"type": "response.create", "event_id": 5})[0] == "invalid_type"


def test_grammar_recognition_of_espeak_speech_with_streaming_partials():
    """pocketsphinx with the script's grammar hears each phrase exactly, partials growing word by word."""
    s = Script.default()
    r = Recognizer(s.phrases, s.prefixes)
    for phrase in ["what time is it", "hey jarvis tell me a story", "turn on the light"]:
        pcm = np.frombuffer(speech(phrase), dtype="<i2")
        r.begin(RATE)
        partials = []
        for i in range(0, len(pcm), 480):
            hyp = r.feed(pcm[i:i + 480])
            if hyp and (not partials or partials[-1] != hyp):
                partials.append(hyp)
        assert r.finish() == phrase
        assert len(partials) >= 3 and partials[-1] == phrase


def test_parse_wav_reads_espeak_streamed_output():
    """espeak-ng --stdout writes bogus sizes; the data chunk is read to the end."""
    out = subprocess.run(["espeak-ng", "--stdout", "hi"], check=True, capture_output=True).stdout
    rate, pcm = parse_wav(out)
    assert rate == 22050 and len(pcm) == (len(out) - 44) // 2


def test_non_loopback_host_is_refused_unless_allowed():
    """Binding a public address needs allow_remote; loopback names are fine."""
    with pytest.raises(ConfigError, match="--allow-remote"):
        DevServer(host="0.0.0.0")
    DevServer(host="::1")
    DevServer(host="localhost")
    DevServer(host="0.0.0.0", allow_remote=True)


def test_busy_port_is_a_config_error():
    """A second server on the same port fails start() with a sentence, not a traceback."""
    with DevServer() as a:
        with pytest.raises(ConfigError, match=f"{a.port}.*another --port"):
            DevServer(port=a.port).start()


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent.devserver", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_cli_serves_until_sigterm_and_exits_0():
    """`devserver --port 0` prints its URL, serves a session, and exits 0 on SIGTERM."""
    from agent.devserver.probe import Probe
    proc = cli("--port", "0", "--log-level", "warning")
    try:
        line = proc.stdout.readline()
        url = re.search(r"ws://\S+", line).group(0)
        with Probe(url) as p:
            assert p.recv()["type"] == "session.created"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0 and time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args, needle", [
    (["--host", "0.0.0.0"], "not a loopback address"),
    (["--script", "/nonexistent.toml"], "cannot read the devserver script"),
    (["--api-key-file", "KEYFILE"], "readable by other users"),
])
def test_cli_config_faults_exit_78_with_one_sentence(tmp_path, args, needle):
    """Bad host, script or key file: exit 78 and a sentence naming it; no traceback, no key shown."""
    key = tmp_path / "key"
    key.write_text("secret-dev-key\n")
    key.chmod(0o644)
    proc = cli(*[str(key) if a == "KEYFILE" else a for a in args], env={**os.environ, "PYTHONWARNINGS": "ignore"})
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 78
    assert needle in err and "Traceback" not in err and "secret-dev-key" not in err + out


def test_without_pocketsphinx_turns_are_heard_as_empty(monkeypatch):
    """The plain fallback: no decoder, every turn transcribes as "" (and gets the catch-all reply)."""
    import agent.devserver.asr as asr
    import agent.speech.recognizer as shared
    monkeypatch.setattr(shared, "Decoder", None)
    r = asr.Recognizer(["hello"])
    assert not r.available
    r.begin(RATE)
    assert r.feed(np.frombuffer(speech("hello"), dtype="<i2")) == ""
    assert r.finish() == ""
    assert Script.default().reply_to("").reply == Script.default().fallback


def test_without_espeak_replies_are_tones():
    """The tone fallback: 0.3 s of 440 Hz per word, at 24 kHz."""
    import asyncio

    from agent.devserver.tts import Synthesizer
    s = Synthesizer()
    s.espeak = None
    pcm = asyncio.run(s.speak("three short words"))
    assert len(pcm) == int(RATE * 0.9) and np.abs(pcm).max() > 8000
