"""Board presets: `[hardware] board = "respeaker-2mic"` fills in what that board always needs.

A preset is a set of config values (devices, channels, mixer, button pin, LEDs) put under every
key the config file does not set itself, before the config is checked: a key written in the
file always wins, and a preset value is checked like any other.
"""

from __future__ import annotations

from typing import Any, Literal

from agent.section import Section

Board = Literal["none", "respeaker-2mic", "usb"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "none": {},
    # Seeed ReSpeaker 2-Mics Pi HAT (hardware/respeaker-2mic.md): one stereo capture device whose
    # left channel is a microphone, a stereo-only codec, the button on GPIO17, three APA102 LEDs on
    # SPI0. "Playback" is the v1 codec's (WM8960) digital volume, for the jack and the speaker alike.
    "respeaker-2mic": {
        "audio": {"input_device": "seeed-2mic", "output_device": "seeed-2mic",
                  "input_channels": 2, "input_channel": 0, "output_channels": 2,
                  "mixer_control": "Playback", "mixer_device": "hw:seeed2micvoicec"},
        "button": {"pin": 17},
        "leds": {"kind": "apa102", "count": 3, "spi_bus": 0, "spi_device": 1},
    },
    # A USB microphone and a USB speaker (or one USB speakerphone): PortAudio names them "USB ...".
    # Most USB speakers play stereo only; their mixer controls differ, so the volume stays software.
    "usb": {
        "audio": {"input_device": "USB", "output_device": "USB", "input_channels": 1,
                  "input_channel": 0, "output_channels": 2, "mixer_control": ""},
    },
}


class HardwareSettings(Section):
    """[hardware]: the board the speaker is built on."""

    board: Board = "none"
    """respeaker-2mic, usb or none: a board fills in [audio] devices, channels and mixer, the
    [button] pin and the [leds] kind and bus; a key set in this file wins over the board's."""


def apply_board(data: dict) -> dict:
    """The parsed TOML with the board's values under every key it leaves out (data is not changed).

    An unknown board or a section of the wrong type is left for the validation to name.
    """
    hardware = data.get("hardware")
    board = hardware.get("board", "none") if isinstance(hardware, dict) else "none"
    preset = PRESETS.get(board) if isinstance(board, str) else None
    if not preset:
        return data
    out = dict(data)
    for section, values in preset.items():
        given = out.get(section, {})
        if isinstance(given, dict):
            out[section] = {**values, **given}
    return out


def chosen(settings) -> list[tuple[str, Any, bool]]:
    """(key, value in use, True when it is the board's) for every key the board presets."""
    rows = []
    for section, values in PRESETS[settings.hardware.board].items():
        for key, value in values.items():
            used = getattr(getattr(settings, section), key)
            rows.append((f"{section}.{key}", used, used == value))
    return rows
