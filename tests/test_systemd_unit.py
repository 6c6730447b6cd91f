"""The shipped unit: systemd-analyze verify clean, exposure <= 3.0, and in step with the daemon."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse
from agent.errors import EX_CONFIG
from agent.service.sandbox import unit_entries

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "mira-agent.service"
INSTALL = REPO / "systemd" / "install.sh"
SHIPPED_EXEC = "/opt/mira-agent/venv/bin/mira-agent"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def values(key: str) -> list[str]:
    return [v for _, k, v in unit_entries(UNIT.read_text()) if k == key]


def value(key: str) -> str:
    (v,) = values(key)
    return v


def executable(tmp_path: Path) -> str:
    """The venv's real mira-agent when installed, else a temporary executable."""
    real = Path(sys.prefix) / "bin" / "mira-agent"
    if real.is_file() and os.access(real, os.X_OK):
        return str(real)
    fake = tmp_path / "mira-agent"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    return str(fake)


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    folder = tmp_path / "units"
    folder.mkdir(exist_ok=True)
    path = folder / "mira-agent.service"
    path.write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_rendered_unit_verifies_without_a_single_warning(tmp_path):
    """systemd-analyze verify on the unit with a real ExecStart path: exit 0 and empty stderr."""
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    result = verify(text.replace(SHIPPED_EXEC, executable(tmp_path)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_check_does_catch_a_misspelt_key(tmp_path):
    """The empty-stderr check is meaningful: a typo in the unit only warns, and the test sees it."""
    text = UNIT.read_text().replace(SHIPPED_EXEC, executable(tmp_path))
    result = verify(text.replace("ProtectHome=", "ProtectHoem="), tmp_path)
    assert "ProtectHoem" in result.stderr


def test_security_exposure_is_at_most_three():
    """systemd-analyze security --offline=yes rates the shipped unit 3.0 or better."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for mira-agent\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0


def test_service_is_notify_with_watchdog_and_stops_retrying_on_config_errors():
    """Type=notify from the main process, a watchdog, restarts on failure but not on exit 78, and
    never gives up restarting for good (no start limit: a transient fault must not leave it dead)."""
    assert value("Type") == "notify" and value("NotifyAccess") == "main"
    assert int(value("WatchdogSec")) >= 10
    assert value("Restart") == "on-failure" and int(value("RestartSec")) > 0
    assert value("RestartPreventExitStatus") == str(EX_CONFIG)
    assert value("StartLimitIntervalSec") == "0" and not values("StartLimitBurst")
    assert value("ExecReload") == f"{SHIPPED_EXEC} reload --pid $MAINPID"
    assert value("RuntimeDirectory") == "mira-agent"
    assert value("ExecStart") == f"{SHIPPED_EXEC} run --config /etc/mira-agent/agent.toml"


def test_unit_user_groups_and_paths_match_the_install_script():
    """User, groups, venv and config paths are the ones install.sh creates."""
    script = INSTALL.read_text()
    assert f"SERVICE_USER={value('User')}\n" in script
    groups = re.search(r"DEVICE_GROUPS=\(([^)]*)\)", script).group(1).split()
    assert value("SupplementaryGroups").split() == groups
    assert "PREFIX=/opt/mira-agent\n" in script and "ETC=/etc/mira-agent\n" in script
    assert f"STATE=/var/lib/{value('StateDirectory')}\n" in script


def test_devices_are_closed_except_sound_gpio_and_spi():
    """DevicePolicy=closed with only ALSA, GPIO character devices and SPI (APA102 LEDs) allowed."""
    assert value("DevicePolicy") == "closed"
    allowed = {v.split()[0] for v in values("DeviceAllow")}
    assert allowed == {"char-alsa", "char-gpiochip", "char-spi"}
    assert "PrivateDevices" not in {k for _, k, _ in unit_entries(UNIT.read_text())}


def test_keys_come_as_credentials_never_in_the_unit():
    """The API key is loaded with LoadCredential= under the name the config looks for."""
    loads = dict(v.split(":", 1) for v in values("LoadCredential"))
    assert loads == {"mira-api-key": "/etc/mira-agent/mira-api-key",
                     "porcupine-access-key": "/etc/mira-agent/porcupine-access-key"}
    assert not values("Environment") and not values("EnvironmentFile")


def test_empty_fallback_credential_lets_the_daemon_find_the_key_elsewhere(tmp_path, monkeypatch):
    """The SetCredential= fallback (a lone newline) reads as no key, so the next source is used."""
    fallbacks = dict(v.split(":", 1) for v in values("SetCredential"))
    assert fallbacks == {"mira-api-key": r"\n", "porcupine-access-key": r"\n"}
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mira-api-key").write_text("\n")  # what systemd writes for the fallback
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("MIRA_API_KEY", "from-the-environment")
    assert parse({}).api_key() == "from-the-environment"
    (creds / "mira-api-key").write_text("from-the-credential\n")
    assert parse({}).api_key() == "from-the-credential"


def test_install_script_is_executable():
    """install.sh is shipped executable."""
    assert INSTALL.stat().st_mode & stat.S_IXUSR
