"""Settings of the microphone and speaker."""

from typing import Literal

from pydantic import Field

from agent.section import Section


class AudioSettings(Section):
    """[audio]: which devices, at which rates, and how loud."""

    backend: Literal["alsa", "file"] = "alsa"
    """alsa: real sound cards through PortAudio; file: a WAV in, a WAV out (no hardware)."""
    input_device: str | int = ""
    """Microphone: a name substring or an index from `mira-agent devices`; empty is the default."""
    output_device: str | int = ""
    """Speaker: a name substring or an index; empty is the default."""
    input_rate: int = Field(48000, ge=8000, le=192000)
    """Preferred capture rate; 48000, 44100 and 16000 are tried if the device refuses it."""
    input_channels: int = Field(1, ge=1, le=16)
    """Channels to open on the microphone (a ReSpeaker 2-Mic HAT has 2)."""
    input_channel: int = Field(0, ge=0, le=15)
    """Which of the opened channels is the voice."""
    output_rate: int = Field(48000, ge=8000, le=192000)
    """Preferred playback rate; 48000, 44100, 24000 and 16000 are tried if the device refuses it."""
    output_channels: int = Field(1, ge=1, le=8)
    """Channels to open on the speaker (some cards only play stereo); each gets the same audio."""
    period_ms: int = Field(20, ge=5, le=100)
    """Speaker period (buffer size) in ms."""
    input_period_ms: int = Field(60, ge=5, le=200)
    """Microphone period in ms: the device hands audio over this often (longer costs less CPU
    while waiting for the wake word, and adds up to that much latency)."""
    volume: int = Field(80, ge=0, le=100)
    """Software volume of replies and sounds, 0-100 %."""
    mixer_control: str = ""
    """ALSA mixer control that takes the volume (e.g. PCM, Speaker); empty: software volume only."""
    mixer_device: str = ""
    """ALSA control device of mixer_control (amixer -D, e.g. hw:1); empty: the default card."""
    input_file: str = ""
    """file backend: the WAV played as the microphone."""
    output_file: str = ""
    """file backend: the WAV the speaker writes."""
    realtime: bool = True
    """file backend: pace the input file in real time (false: as fast as possible)."""
    preroll_ms: int = Field(500, ge=0, le=5000)
    """Microphone audio kept before a trigger, so no word is lost."""
