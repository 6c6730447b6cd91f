"""Settings of the Mira Realtime connection and session."""

from typing import Literal

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.section import Section

AudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]


class ServerSettings(Section):
    """[server]: where the realtime service is and how the key is found."""

    url: str = "wss://api.vmira.ai/v1/realtime"
    """WebSocket endpoint; ws:// is accepted only for loopback hosts."""
    api_key_file: str = ""
    """File holding the API key (mode 0600); used when no systemd credential is set."""
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    """Seconds to wait for the connection and session.created."""
    ping_interval_s: float = Field(10.0, gt=0, le=300)
    """Seconds between keepalive pings on an open session."""
    ping_timeout_s: float = Field(5.0, gt=0, le=120)
    """Seconds without a pong before the socket is declared dead."""
    turn_liveness_s: float = Field(3.0, ge=0.3, le=60)
    """While a turn is in progress, a silent server is found dead within this many seconds."""

    @field_validator("url")
    @classmethod
    def _secure_url(cls, url: str) -> str:
        check_url(url)
        return url


def is_loopback(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse anything but wss://, or ws:// to a loopback host (keys never cross a network in clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a WebSocket URL; use wss://host/path")
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise ValueError(f"ws:// sends the API key unencrypted; use wss:// for {parts.hostname} "
                         f"(ws:// is allowed only for 127.0.0.1, ::1 and localhost)")


class TurnDetectionSettings(Section):
    """[session.turn_detection]: who decides that the user has finished speaking."""

    mode: Literal["server_vad", "manual"] = "server_vad"
    """server_vad: the server ends turns on silence; manual: the device commits (push-to-talk)."""
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Server VAD activation threshold, 0..1."""
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    """Audio kept before detected speech, in ms."""
    silence_duration_ms: int = Field(500, ge=50, le=10000)
    """Silence that ends a turn, in ms."""


class SessionSettings(Section):
    """[session]: what the device asks of the model."""

    voice: str = "aria"
    """Voice of the assistant."""
    instructions: str = "You are a friendly voice assistant on a smart speaker. Answer briefly."
    """System prompt."""
    input_audio_format: AudioFormat = "pcm16"
    """Format of microphone audio sent up: pcm16 (24 kHz), g711_ulaw or g711_alaw (8 kHz)."""
    output_audio_format: AudioFormat = "pcm16"
    """Format of reply audio sent down."""
    transcription_model: str = "whisper-1"
    """Model for partial user transcripts; empty turns transcription off."""
    transcription_language: str = ""
    """Language hint for transcription (ISO 639-1, e.g. en); empty lets the model guess."""
    temperature: float = Field(0.8, ge=0.6, le=1.2)
    """Sampling temperature of the model."""
    follow_up_s: float = Field(8.0, ge=0, le=120)
    """Seconds after a reply during which the user may speak again without a trigger."""
    frame_ms: Literal[20, 40] = 20
    """Length of each audio frame sent up, in ms (the service recommends 20-40)."""
    max_session_min: float = Field(55.0, gt=0, le=600)
    """Sessions are ended cleanly before this many minutes (the service caps their length)."""
    turn_detection: TurnDetectionSettings = TurnDetectionSettings()
    """How turns end."""


class ReconnectSettings(Section):
    """[reconnect]: how lost connections are retried."""

    base_s: float = Field(0.5, gt=0, le=60)
    """First backoff delay; doubles on each failure, with full jitter."""
    cap_s: float = Field(30.0, gt=0, le=600)
    """Longest backoff delay for network faults."""
    auth_retry_s: float = Field(300.0, gt=0, le=86400)
    """Delay between attempts after the server refused the key (fix the key and send SIGHUP)."""
    buffer_s: float = Field(15.0, ge=0, le=120)
    """How long a turn waits for the server to come back (its audio kept) before it is dropped."""
    stable_s: float = Field(10.0, gt=0, le=600)
    """A session that stayed up this long resets the backoff."""
