"""Config: typed, immutable, every key documented, every error naming its key."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent import config
from agent.errors import EX_CONFIG, ConfigError, SecretError

ROOT = Path(__file__).resolve().parent.parent


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _keys(ann, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def _documented(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in data.items():
        if isinstance(v, dict) and not k == "pins":
            out |= _documented(v, f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


def test_example_config_loads_and_documents_every_key():
    """config/agent.toml is valid and names every setting, each with a comment above it."""
    cfg = config.load(config.EXAMPLE_CONFIG)
    assert cfg.settings.server.url.startswith("wss://")
    text = config.EXAMPLE_CONFIG.read_text()
    data = tomllib.loads(text)
    top = {k for k in config.Settings.model_fields if k != "tools"}
    documented = _documented({k: v for k, v in data.items() if k != "tools"})
    expected = {k for k in _keys(config.Settings) if k.split(".")[0] in top and not k.startswith("leds.pins")}
    text_keys = {m.group(1) for m in re.finditer(r"^#?\s*(\w+)\s*=", text, re.M)}
    missing = sorted(k for k in expected if k not in documented
                     and not any(d.startswith(k + ".") for d in documented)
                     and k.rsplit(".", 1)[-1] not in text_keys)
    assert not missing, f"keys not in config/agent.toml: {missing}"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\w+\s*=", line):
            assert lines[i - 1].startswith("#"), f"line {i + 1} has no comment above it: {line}"


def test_settings_are_immutable():
    """A loaded setting cannot be changed by accident at run time."""
    cfg = config.parse({})
    with pytest.raises(Exception):
        cfg.settings.audio.volume = 10


@pytest.mark.parametrize("data,key", [
    ({"audio": {"volume": 150}}, "audio.volume"),
    ({"audio": {"volum": 50}}, "audio.volum: unknown key"),
    ({"server": {"connect_timeout_s": "5"}}, "server.connect_timeout_s"),
    ({"session": {"turn_detection": {"mode": "auto"}}}, "session.turn_detection.mode"),
    ({"tools": [{"description": "x"}]}, "tools[0].name: required key is missing"),
    ({"server": {"url": "ws://example.com/v1"}}, "server.url"),
])
def test_errors_name_the_key(data, key):
    """Every invalid or unknown key is reported with its dotted path."""
    with pytest.raises(ConfigError) as e:
        config.parse(data)
    assert key in str(e.value)


def test_ws_allowed_only_for_loopback():
    """ws:// is fine for 127.0.0.1, ::1 and localhost; anything else must be wss://."""
    for url in ("ws://127.0.0.1:8765", "ws://[::1]:8765/x", "ws://localhost:1", "wss://api.vmira.ai/v1/realtime"):
        assert config.parse({"server": {"url": url}}).settings.server.url == url
    with pytest.raises(ConfigError, match="unencrypted"):
        config.parse({"server": {"url": "ws://10.0.0.2:8765"}})


def test_missing_and_broken_files_are_config_errors(tmp_path):
    """A missing file or bad TOML is a sentence, not a traceback."""
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[audio\nvolume = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_run_with_bad_config_exits_78_with_the_key(tmp_path):
    """`mira-agent run --config F` with a wrong key exits 78 and names it, no traceback."""
    f = tmp_path / "agent.toml"
    f.write_text("[audio]\nvolume = 'loud'\n")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(f)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == EX_CONFIG
    assert "audio.volume" in r.stderr
    assert "Traceback" not in r.stderr


class TestApiKey:
    def _cfg(self, tmp_path, key_file=""):
        return config.parse({"server": {"api_key_file": key_file}}, tmp_path / "agent.toml")

    def test_credential_wins(self, tmp_path, monkeypatch):
        """The systemd credential comes before the key file and the environment."""
        (tmp_path / "creds").mkdir()
        (tmp_path / "creds" / "mira-api-key").write_text("sk-cred\n")
        kf = tmp_path / "key"
        kf.write_text("sk-file")
        kf.chmod(0o600)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
        monkeypatch.setenv("MIRA_API_KEY", "sk-env")
        assert self._cfg(tmp_path, str(kf)).api_key() == "sk-cred"

    def test_key_file_then_env(self, tmp_path, monkeypatch):
        """Without a credential, the key file (relative to the config) wins over MIRA_API_KEY."""
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        monkeypatch.setenv("MIRA_API_KEY", "sk-env")
        kf = tmp_path / "key"
        kf.write_text("sk-file\n")
        kf.chmod(0o600)
        assert self._cfg(tmp_path, "key").api_key() == "sk-file"
        assert self._cfg(tmp_path).api_key() == "sk-env"
        monkeypatch.delenv("MIRA_API_KEY")
        assert self._cfg(tmp_path).api_key() is None

    def test_readable_key_file_is_refused_without_showing_the_key(self, tmp_path, monkeypatch):
        """A group- or world-readable key file is refused, naming chmod 600, never the key."""
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        kf = tmp_path / "key"
        kf.write_text("sk-secret-value")
        kf.chmod(0o644)
        with pytest.raises(SecretError) as e:
            self._cfg(tmp_path, str(kf)).api_key()
        assert "chmod 600" in str(e.value) and "server.api_key_file" in str(e.value)
        assert "sk-secret-value" not in str(e.value)


def test_commented_tool_examples_load_when_uncommented():
    """The [[tools]] examples in config/agent.toml are valid as soon as a user uncomments them."""
    text = config.EXAMPLE_CONFIG.read_text()
    tail = text[text.index("# Tools the model may call"):]
    lines = [re.sub(r"^# ", "", l) if re.match(r"^# (\[|\w+\s*=)", l) else l for l in tail.splitlines()]
    data = tomllib.loads("\n".join(lines))
    cfg = config.parse(data)
    assert [t.action.kind for t in cfg.settings.tools] == ["gpio", "command", "http", "builtin"]
