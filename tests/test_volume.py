"""Volume buttons and a rotary encoder on gpiozero's mock pins, through the daemon: the volume the
voice tool changes, a tick at the new level, the level on the LED, and the level kept across a
restart under the service's state directory.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.audio.playout import volume_to_gain
from agent.audio.wavfile import read_wav
from agent.daemon import DeviceBridge
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from agent.gpio import Buttons, ButtonAction
from agent.gpio.settings import ButtonSettings
from agent.sounds import tone
from agent.state import State
from agent.volume import VolumeStore
from harness import KEY, Run, file_config

ROOT = Path(__file__).resolve().parent.parent
UP, DOWN, ENC_A, ENC_B, ENC_SW, LED = 5, 6, 23, 24, 25, 22
TICK = tone("volume")


def click(pins, clicks: int) -> None:
    """Turn the encoder: A leads B clockwise (louder), B leads A the other way."""
    first, second = (ENC_A, ENC_B) if clicks > 0 else (ENC_B, ENC_A)
    for _ in range(abs(clicks)):
        pins.pin(first).drive_low()
        pins.pin(second).drive_low()
        pins.pin(first).drive_high()
        pins.pin(second).drive_high()


def press(pins, pin: int) -> None:
    pins.pin(pin).drive_low()
    pins.pin(pin).drive_high()


def wait(condition, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.005)
    return value


def peak(samples: np.ndarray) -> int:
    return int(np.abs(samples.astype(np.int32)).max())


# --- the store ----------------------------------------------------------------------------

def test_the_store_lives_in_STATE_DIRECTORY_and_keeps_a_level_whole(tmp_path):
    """$STATE_DIRECTORY (its first folder) holds `volume`: saved 85 reads back 85."""
    store = VolumeStore.from_environment({"STATE_DIRECTORY": f"{tmp_path}:/var/lib/other"})
    assert store.load() is None
    store.save(85)
    assert (tmp_path / "volume").read_text() == "85\n"
    assert VolumeStore(tmp_path).load() == 85
    assert list(tmp_path.iterdir()) == [tmp_path / "volume"]  # no temporary file left behind


def test_without_a_state_directory_nothing_is_kept(tmp_path):
    """Run by hand (no StateDirectory=): the volume is simply not kept."""
    store = VolumeStore.from_environment({})
    store.save(30)
    assert store.path is None and store.load() is None


@pytest.mark.parametrize("content", ["loud\n", "150\n", ""])
def test_a_damaged_file_is_ignored_with_a_warning_naming_it(tmp_path, caplog, content):
    """A file that is not 0-100: one warning naming the file; [audio] volume applies."""
    (tmp_path / "volume").write_text(content)
    with caplog.at_level(logging.WARNING):
        assert VolumeStore(tmp_path).load() is None
    assert any(str(tmp_path / "volume") in r.getMessage() and "using [audio] volume" in r.getMessage()
               for r in caplog.records)


def test_a_state_directory_that_cannot_be_written_warns_once(tmp_path, caplog):
    """Saving into a missing folder: one warning for many saves, and nothing raised."""
    store = VolumeStore(tmp_path / "gone")
    with caplog.at_level(logging.WARNING):
        for level in range(10, 60, 10):
            store.save(level)
    lines = [r.getMessage() for r in caplog.records if "cannot save the volume" in r.getMessage()]
    assert len(lines) == 1 and "it will not survive a restart" in lines[0]


def test_the_voice_tools_volume_is_kept_too(tmp_path):
    """DeviceBridge.set_volume (what the volume tool calls) saves the level it sets."""
    class Speaker:
        def set_volume(self, percent):
            self.volume = percent

    speaker = Speaker()
    bridge = DeviceBridge(speaker, lambda *a: None, 50, ring_s=1, max_timers=1,
                          store=VolumeStore(tmp_path))
    bridge.set_volume(130)
    bridge.close()
    assert speaker.volume == 100 and VolumeStore(tmp_path).load() == 100


# --- the buttons ------------------------------------------------------------------------------

def test_volume_buttons_step_on_press_and_repeat_while_held(pins):
    """A press is one step; held, the button steps again every 0.3 s; no ButtonEvent is posted."""
    steps: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    settings = ButtonSettings(volume_up_pin=UP, volume_down_pin=DOWN)
    with Buttons(settings, events.put_nowait, on_volume=steps.put_nowait):
        press(pins, UP)
        assert steps.get(timeout=2) == +1
        pins.pin(DOWN).drive_low()
        time.sleep(1.0)
        pins.pin(DOWN).drive_high()
        got = [steps.get_nowait() for _ in range(steps.qsize())]
    assert got[0] == -1 and set(got) == {-1} and len(got) >= 2  # the press, then repeats
    assert events.empty()


def test_the_encoder_steps_per_detent_and_its_switch_mutes_or_talks(pins):
    """Clockwise +1 per detent, counter-clockwise -1; the push switch toggles mute (mute mode) or
    is the talk button (talk mode)."""
    steps: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    settings = ButtonSettings(encoder_a_pin=ENC_A, encoder_b_pin=ENC_B, encoder_switch_pin=ENC_SW)
    with Buttons(settings, events.put_nowait, on_volume=steps.put_nowait):
        click(pins, 3)
        click(pins, -2)
        press(pins, ENC_SW)
    assert [steps.get_nowait() for _ in range(steps.qsize())] == [1, 1, 1, -1, -1]
    assert [e.action for e in (events.get_nowait() for _ in range(events.qsize()))] == \
        [ButtonAction.MUTE_TOGGLE]
    with Buttons(settings.model_copy(update={"encoder_switch": "talk"}), events.put_nowait):
        press(pins, ENC_SW)
    assert [events.get_nowait().action for _ in range(2)] == [ButtonAction.PRESSED, ButtonAction.RELEASED]


@pytest.mark.parametrize("data, named", [
    ({"encoder_a_pin": 23}, "needs both encoder_a_pin and encoder_b_pin"),
    ({"pin": 17, "volume_up_pin": 17}, "pin and volume_up_pin are both BCM 17"),
    ({"encoder_a_pin": 5, "encoder_b_pin": 6, "volume_down_pin": 6}, "volume_down_pin and encoder_b_pin are both BCM 6"),
])
def test_button_pins_must_be_distinct_and_the_encoder_whole(data, named):
    """A pin used twice, or half an encoder: a config error naming the keys."""
    from agent.config import parse
    from agent.errors import ConfigError
    with pytest.raises(ConfigError, match=named):
        parse({"button": data})


# --- through the daemon -----------------------------------------------------------------------

@pytest.mark.slow
def test_knob_and_buttons_through_the_daemon_and_the_level_survives_a_restart(tmp_path, pins, monkeypatch):
    """In a daemon (mock pins, the file backend): volume up, two encoder clicks up and one down step
    the bridge's volume by [button] volume_step, each with a tick at the new level written to the
    speaker and the level on the LED; the encoder's push mutes and unmutes. The level is kept in
    $STATE_DIRECTORY; a real `mira-agent run` started on it plays its wake sound at that level,
    though its config says volume = 100."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state_dir))
    with DevServer(api_key=KEY) as server:
        run = Run(tmp_path, server, np.zeros(30 * SAMPLE_RATE, np.int16), trigger_on_start=False,
                  audio={"volume": 50}, sounds={"enabled": True},
                  button={"volume_up_pin": UP, "encoder_a_pin": ENC_A, "encoder_b_pin": ENC_B,
                          "encoder_switch_pin": ENC_SW, "volume_step": 5},
                  leds={"kind": "single", "pins": {"listening": LED}})
        with run:
            run.wait_state(State.IDLE)
            speaker = run.conversation.speaker
            levels = []
            for act, level in ((lambda: press(pins, UP), 55), (lambda: click(pins, 1), 60),
                               (lambda: click(pins, 1), 65), (lambda: click(pins, -1), 60)):
                written = speaker.samples_written
                act()
                wait(lambda: run.parts.bridge.get_volume() == level, what=f"volume {level}")
                wait(lambda: round(pins.pin(LED).state, 3) == level / 100, what=f"LED at {level} %")
                wait(lambda: speaker.samples_written >= written + len(TICK), what=f"the tick at {level}")
                wait(speaker.drained, what="the tick played")  # a person turning slowly hears each
                levels.append(level)
            assert VolumeStore(state_dir).load() == 60
            press(pins, ENC_SW)
            run.wait_state(State.MUTED)
            run.states.clear()
            press(pins, ENC_SW)
            run.wait_state(State.IDLE)
        out = read_wav(tmp_path / "reply.wav")
    ticks = out[: len(TICK) * len(levels)].reshape(len(levels), len(TICK))
    last = slice(2 * 480, 3 * 480)  # the first 20 ms block glides from the old gain to the new
    for tick, level in zip(ticks, levels):  # each tick at the level it announces
        assert abs(peak(tick[last]) - peak(TICK[last]) * volume_to_gain(level)) <= 2, (level, peak(tick))

    # The restart: a real daemon, [audio] volume = 100, started on the state directory above.
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Hello.")], trailing_s=3.0))
    with DevServer(api_key=KEY) as server:
        config = file_config(tmp_path, server.url)
        config.write_text(config.read_text().replace('backend = "file"', 'backend = "file"\nvolume = 100'))
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        done = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(config),
                               "--trigger-on-start", "--exit-when-done"], cwd=ROOT, timeout=60,
                              env={**env, "MIRA_API_KEY": KEY, "STATE_DIRECTORY": str(state_dir)},
                              capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    wake = read_wav(tmp_path / "out.wav")[: len(tone("wake"))]
    assert abs(peak(wake) - peak(tone("wake")) * volume_to_gain(60)) <= 2, peak(wake)
    assert VolumeStore(state_dir).load() == 60
