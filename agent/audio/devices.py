"""Opening the microphone and speaker the config asks for: a sound card, or WAV files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from agent.audio.base import Microphone, Speaker
from agent.audio.settings import AudioSettings
from agent.errors import ConfigError

Resolve = Callable[[str], Path]
DeviceStateCallback = Callable[[bool, str], None]
"""Told (False, why) when a device is lost and (True, what) when it works again."""


def _file_setting(settings: AudioSettings, key: str, resolve: Resolve) -> Path:
    value = getattr(settings, key)
    if not value:
        raise ConfigError(f"[audio] {key} is empty: the file backend needs a WAV file path there "
                          "(or set [audio] backend = \"alsa\")")
    return resolve(value)


def _require_pyaudio() -> None:
    """A sound card needs PyAudio: without it nothing will ever open, so it is a config error."""
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        raise ConfigError('[audio] backend = "alsa" needs PyAudio, which is not installed: install '
                          "the alsa extra (pip install 'mira-agent[alsa]'), or set [audio] backend = "
                          '"file"') from None


def open_microphone(settings: AudioSettings, resolve: Resolve = Path,
                    on_state: DeviceStateCallback | None = None) -> Microphone:
    """The microphone of settings.backend (not started yet); a sound card that is absent now is
    not an error here: starting it reports that to on_state and waits for the device."""
    if settings.backend == "file":
        from agent.audio.wavfile import WavMicrophone
        return WavMicrophone(_file_setting(settings, "input_file", resolve), settings.realtime)
    _require_pyaudio()
    from agent.audio.capture import PyAudioMicrophone
    return PyAudioMicrophone(settings, on_state=on_state)


def open_speaker(settings: AudioSettings, resolve: Resolve = Path,
                 on_state: DeviceStateCallback | None = None) -> Speaker:
    """The speaker of settings.backend, ready to play."""
    if settings.backend == "file":
        from agent.audio.wavfile import WavSpeaker
        return WavSpeaker(_file_setting(settings, "output_file", resolve), settings.realtime,
                          volume=settings.volume)
    _require_pyaudio()
    from agent.audio.playback import PyAudioSpeaker
    return PyAudioSpeaker(settings, on_state=on_state)


def main(config_path: str | None = None) -> int:
    """`mira-agent devices`: list the sound devices, marking those the config picks.

    Exit status 1 only when a config is given and its [audio] input_device or output_device
    picks none; a plain listing (no --config) exits 0, also when there is no sound card.
    """
    from agent.audio.portaudio import AudioDeviceError, chosen_devices, format_devices, list_devices

    if config_path:
        from agent import config as config_mod
        settings = config_mod.load(config_path).settings.audio
    else:
        settings = AudioSettings()
    if not list_devices():
        print("No sound card found: PortAudio lists no input or output device. Check `arecord -l` "
              "and `aplay -l`, the card's overlay in /boot/firmware/config.txt (hardware/README.md), "
              "and that this user is in the audio group.")
        return 1 if config_path and settings.backend != "file" else 0
    print(format_devices(settings), end="")
    if settings.backend == "file":
        print('([audio] backend = "file": the daemon uses WAV files, not these devices)')
        return 0
    if not config_path:
        return 0  # a listing: only a config's choice of device can be wrong
    return 1 if any(isinstance(p, AudioDeviceError) for p in chosen_devices(settings).values()) else 0
