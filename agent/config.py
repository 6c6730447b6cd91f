"""The daemon's configuration: a TOML file read into typed, immutable settings."""

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from agent.audio.settings import AudioSettings
from agent.boards import HardwareSettings, apply_board
from agent.errors import ConfigError
from agent.gpio.settings import ButtonSettings, LedSettings
from agent.hooks import HookSettings
from agent.offline.settings import OfflineSettings
from agent.realtime.settings import ReconnectSettings, ServerSettings, SessionSettings
from agent.secrets import find_secret
from agent.section import Section
from agent.tools.settings import ToolboxSettings, ToolList
from agent.wake.settings import WakeSettings

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "agent.toml"


class EchoSettings(Section):
    """[echo]: echo cancellation and voice barge-in."""

    enabled: bool = True
    """Cancel the speaker's echo from the microphone (WebRTC AEC); off where unavailable."""
    delay_ms: int = Field(40, ge=0, le=500)
    """Speaker-to-microphone delay hint passed to WebRTC (AEC3 measures the real delay itself)."""
    barge_in: bool = True
    """Let the user's voice interrupt a reply (needs echo cancellation)."""
    barge_in_threshold_db: float = Field(-35.0, ge=-90, le=0)
    """Level of echo-cancelled speech (dBFS) that counts as the user talking."""
    barge_in_ms: int = Field(150, ge=20, le=2000)
    """Speech must last this long to interrupt."""


class SoundSettings(Section):
    """[sounds]: short earcons; empty uses the built-in sound."""

    wake: str = ""
    """WAV played when the speaker starts listening."""
    end: str = ""
    """WAV played when a session ends."""
    error: str = ""
    """WAV played on an error."""
    ring: str = ""
    """WAV played (repeatedly) while a timer rings."""
    volume: str = ""
    """WAV played at the new level when a volume button or knob is turned (outside a session)."""
    enabled: bool = True
    """Play earcons at all."""


class DaemonSettings(Section):
    """[daemon]: how the process runs."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log verbosity (the --log-level flag wins)."""
    exit_when_done: bool = False
    """Exit once the input is consumed and the conversation has finished (file backend, scripts)."""


class LoggingSettings(Section):
    """[logging]: what the log (the journal, under systemd) keeps."""

    speech: bool = True
    """Log what people said and what the assistant answered; false logs only how many words."""


class Settings(Section):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    """The realtime service."""
    session: SessionSettings = SessionSettings()
    """What the session asks of the model."""
    reconnect: ReconnectSettings = ReconnectSettings()
    """Retry policy."""
    hardware: HardwareSettings = HardwareSettings()
    """The board (a preset under the audio, button and LED settings)."""
    audio: AudioSettings = AudioSettings()
    """Microphone and speaker."""
    wake: WakeSettings = WakeSettings()
    """Wake word."""
    button: ButtonSettings = ButtonSettings()
    """Buttons."""
    leds: LedSettings = LedSettings()
    """State lights."""
    hooks: HookSettings = HookSettings()
    """A program run on state changes and events."""
    echo: EchoSettings = EchoSettings()
    """Echo cancellation and barge-in."""
    sounds: SoundSettings = SoundSettings()
    """Earcons."""
    daemon: DaemonSettings = DaemonSettings()
    """Process behaviour."""
    logging: LoggingSettings = LoggingSettings()
    """What the log keeps."""
    toolbox: ToolboxSettings = ToolboxSettings()
    """Built-in tools and timers."""
    tools: ToolList = []
    """Tools the model may call."""
    offline: OfflineSettings = OfflineSettings()
    """Local answers while the service is unreachable."""


@dataclass(frozen=True)
class Config:
    """Settings plus where they came from (relative paths resolve against its folder)."""

    settings: Settings
    path: Path | None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def api_key(self) -> str | None:
        """The Mira API key from the credential, the key file or MIRA_API_KEY."""
        return find_secret(credential="mira-api-key", file=self.settings.server.api_key_file,
                           env="MIRA_API_KEY", what="API key", key="server.api_key_file",
                           base_dir=self.base_dir)


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict) -> str:
    key = _key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against config/agent.toml)"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    value = err.get("input")
    got = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    return f"{key}: {err['msg'].removeprefix('Value error, ')}{got}"


def parse(data: dict, path: Path | None = None) -> Config:
    """Settings from a parsed TOML document; ConfigError names every bad key."""
    try:
        settings = Settings.model_validate(apply_board(data))
    except ValidationError as e:
        where = f" in {path}" if path else ""
        problems = "; ".join(_describe(err) for err in e.errors())
        raise ConfigError(f"config error{where}: {problems}",
                          keys=tuple(dict.fromkeys(_key_path(err["loc"]) for err in e.errors()))) from None
    return Config(settings, path)


def load(path: str | Path) -> Config:
    """Read and check a config file; every failure is a ConfigError with one sentence."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; copy config/agent.toml there "
                          f"and edit it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return parse(data, path.resolve())
