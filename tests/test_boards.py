"""[hardware] board presets: the settings each board resolves to, a key of the file winning over
the board's, the example config working with one line changed, and `mira-agent check` saying
what the board chose.
"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def resolved(toml: dict):
    return config.parse(toml).settings


def test_the_respeaker_board_fills_in_devices_channels_mixer_button_and_leds():
    """board = respeaker-2mic: seeed-2mic in and out, 2 channels in (the left one), stereo out, the
    WM8960's Playback control on its card, the button on GPIO17, three APA102 LEDs on spidev0.1."""
    s = resolved({"hardware": {"board": "respeaker-2mic"}})
    a = s.audio
    assert (a.input_device, a.output_device) == ("seeed-2mic", "seeed-2mic")
    assert (a.input_channels, a.input_channel, a.output_channels) == (2, 0, 2)
    assert (a.mixer_control, a.mixer_device) == ("Playback", "hw:seeed2micvoicec")
    assert s.button.pin == 17
    assert (s.leds.kind, s.leds.count, s.leds.spi_path) == ("apa102", 3, "/dev/spidev0.1")
    # Nothing else moves: rates, volume and the rest stay the defaults.
    plain = config.Settings()
    assert (a.input_rate, a.output_rate, a.volume, s.button.mode) == \
        (plain.audio.input_rate, plain.audio.output_rate, plain.audio.volume, plain.button.mode)
    assert s.wake == plain.wake and s.leds.brightness == plain.leds.brightness


def test_the_usb_board_fills_in_usb_devices_and_software_volume():
    """board = usb: a 'USB' microphone (mono) and speaker (stereo), no mixer, no pins, no LEDs."""
    s = resolved({"hardware": {"board": "usb"}})
    a = s.audio
    assert (a.input_device, a.output_device, a.input_channels, a.output_channels) == ("USB", "USB", 1, 2)
    assert a.mixer_control == "" and s.button.pin is None and s.leds.kind == "none"


def test_no_board_is_exactly_the_defaults():
    """board = none (or no [hardware]) changes nothing."""
    assert resolved({"hardware": {"board": "none"}}) == resolved({}) == config.Settings()


def test_a_key_in_the_file_wins_over_the_boards():
    """respeaker-2mic with the jack's Headphone control, no LEDs and the button on 27: those three
    are the file's, everything else still the board's."""
    s = resolved({"hardware": {"board": "respeaker-2mic"}, "audio": {"mixer_control": "Headphone"},
                  "leds": {"kind": "none"}, "button": {"pin": 27, "mode": "hold"}})
    assert s.audio.mixer_control == "Headphone" and s.audio.mixer_device == "hw:seeed2micvoicec"
    assert s.leds.kind == "none" and (s.button.pin, s.button.mode) == (27, "hold")
    assert s.audio.input_device == "seeed-2mic" and s.audio.input_channels == 2


def test_a_board_value_that_clashes_with_the_file_is_named():
    """The board's button pin 17 and a mute switch put on 17 too: the error names both keys."""
    with pytest.raises(ConfigError, match="button: .*pin and mute_pin are both BCM 17"):
        resolved({"hardware": {"board": "respeaker-2mic"}, "button": {"mute_pin": 17}})


def test_an_unknown_board_is_a_config_error_listing_the_boards():
    """board = "respeaker-4mic": hardware.board named, with the boards there are."""
    with pytest.raises(ConfigError, match=r"hardware\.board: Input should be 'none', 'respeaker-2mic' or 'usb'"):
        resolved({"hardware": {"board": "respeaker-4mic"}})


def test_the_example_config_takes_a_board_with_one_line_changed(tmp_path):
    """config/agent.toml with only board = "respeaker-2mic" set resolves to the board's values
    (the keys a board fills in are commented out there, so the example never hides the board)."""
    text = config.EXAMPLE_CONFIG.read_text()
    assert text.count('board = "none"') == 1
    path = tmp_path / "agent.toml"
    path.write_text(text.replace('board = "none"', 'board = "respeaker-2mic"'))
    s = config.load(path).settings
    assert s == resolved({**tomllib.loads(text), "hardware": {"board": "respeaker-2mic"}})
    assert (s.audio.input_device, s.button.pin, s.leds.kind) == ("seeed-2mic", 17, "apa102")


@pytest.mark.slow
def test_check_shows_what_the_board_chose_and_the_missing_spi_device(tmp_path):
    """`mira-agent check` on a respeaker-2mic config that sets its own mixer: a board row listing the
    board's picks and the config's override, and an LEDs row failing with how to turn SPI on."""
    (tmp_path / "agent.toml").write_text(
        '[server]\nurl = "ws://127.0.0.1:9/v1/realtime"\n[hardware]\nboard = "respeaker-2mic"\n'
        '[audio]\nmixer_control = "Speaker"\n')
    env = {**os.environ, "MIRA_API_KEY": "sk-mira-board-test"}
    r = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(tmp_path / "agent.toml")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    out = r.stdout
    (board,) = [x for x in out.splitlines() if re.match(r"  \S+\s+board  ", x)]
    assert board.split()[0] == "ok"
    assert "respeaker-2mic chose audio.input_device = 'seeed-2mic'" in board
    assert "button.pin = 17" in board and "leds.kind = 'apa102'" in board
    assert "the config sets audio.mixer_control = 'Speaker'" in board
    leds = out.splitlines().index(next(x for x in out.splitlines() if re.match(r"  \S+\s+LEDs  ", x)))
    assert out.splitlines()[leds].split()[0] == "FAIL" and "/dev/spidev0.1 does not exist" in out
    assert "dtparam=spi=on" in out.splitlines()[leds + 1]
    assert r.returncode == 1 and "Traceback" not in out + r.stderr
