"""`mira-agent demo`: a whole spoken conversation, offline, against the local Mira server.

The user's voice is espeak-ng speaking into a WAV file that plays as the microphone; the reply
is written to another WAV. Everything runs through the classes the daemon uses on a Pi.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import wave

import numpy as np

from agent import config as config_mod
from agent.audio.base import SAMPLE_RATE
from agent.audio.wavfile import read_wav
from agent.daemon import Parts, build_conversation
from agent.errors import MiraAgentError

log = logging.getLogger("agent.demo")

# What the user says, with the pauses between (seconds of silence before each phrase).
USER_TURNS = [(0.5, "Hey Jarvis, what time is it?"), (5.0, "Turn on the light.")]
TRAILING_SILENCE_S = 4.0
DEMO_KEY = "sk-mira-demo"


def speak(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """espeak-ng's rendering of text as 24 kHz int16 (the tests use this too)."""
    if shutil.which("espeak-ng") is None:
        raise MiraAgentError("espeak-ng is not installed: run `sudo apt-get install espeak-ng` "
                             "(make demo does this for you)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
                       check=True, capture_output=True, timeout=30)
        return read_wav(wav)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    """A 24 kHz mono 16-bit WAV file of pcm."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def user_audio(turns=USER_TURNS, trailing_s: float = TRAILING_SILENCE_S) -> np.ndarray:
    parts = []
    for pause, text in turns:
        parts += [np.zeros(int(pause * SAMPLE_RATE), np.int16), speak(text)]
    parts.append(np.zeros(int(trailing_s * SAMPLE_RATE), np.int16))
    return np.concatenate(parts)


def demo_config(url: str, folder: Path) -> config_mod.Config:
    return config_mod.parse({
        "server": {"url": url},
        "session": {"follow_up_s": 8.0},
        "audio": {"backend": "file", "input_file": str(folder / "you.wav"),
                  "output_file": str(folder / "reply.wav"), "realtime": True, "volume": 100},
        "wake": {"engine": "openwakeword", "model": "hey_jarvis"},
        "daemon": {"exit_when_done": True},
        "tools": [{"name": "set_light", "description": "Switch the living-room light on or off.",
                   "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}},
                                  "required": ["on"]},
                   "action": {"kind": "command", "argv": ["echo", "light on={on}"]}}],
    }, folder / "agent.toml")


def main(folder: str = ".demo") -> int:
    from agent.extras import require_extra
    require_extra("devserver", "demo")
    from agent.devserver import DevServer

    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("agent.devserver").setLevel(logging.WARNING)
    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log.info("speaking the user's part with espeak-ng: %s",
             " / ".join(text for _, text in USER_TURNS))
    write_wav(out / "you.wav", user_audio())
    with DevServer(host="127.0.0.1", port=0, api_key=DEMO_KEY) as server:
        log.info("local Mira server listening on %s", server.url)
        cfg = demo_config(server.url, out)
        parts = Parts()
        try:
            conversation = build_conversation(cfg, parts, api_key=DEMO_KEY)
            code = conversation.run()
        finally:
            parts.close()
    reply = read_wav(out / "reply.wav")
    log.info("reply audio (%.1f s) written to %s", len(reply) / SAMPLE_RATE, out / "reply.wav")
    log.info("your side of the conversation is in %s", out / "you.wav")
    if conversation.counters["sessions"] == 0 or len(reply) == 0:
        log.error("the demo did not get a spoken reply")
        return 1
    return code
