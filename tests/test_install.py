"""systemd/install.sh: shellcheck clean, and real runs into a throwaway root (host commands printed)."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "systemd" / "install.sh"
KEY = "sk-mira-test-0123456789abcdef"


@pytest.fixture
def source(tmp_path) -> Path:
    """A source tree with what the script reads (the repo's own files, plus a config if not yet there)."""
    src = tmp_path / "src"
    (src / "config").mkdir(parents=True)
    shutil.copytree(REPO / "systemd", src / "systemd")
    shutil.copy(REPO / "pyproject.toml", src)
    if (REPO / "hardware").is_dir():
        shutil.copytree(REPO / "hardware", src / "hardware")
    example = REPO / "config" / "agent.toml"
    (src / "config" / "agent.toml").write_text(
        example.read_text() if example.exists() else "[server]\nurl = \"wss://api.vmira.ai/v1/realtime\"\n")
    return src


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def install(root: Path, source: Path, *args: str, key: str | None = None, stdin: str = "",
            extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MIRA_API_KEY", "PORCUPINE_ACCESS_KEY")}
    if key is not None:
        env["MIRA_API_KEY"] = key
    env.update(extra_env or {})
    return subprocess.run(["bash", str(SCRIPT), "--root", str(root), "--source", str(source), *args],
                          input=stdin, capture_output=True, text=True, env=env, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_script_is_shellcheck_clean():
    """shellcheck reports nothing for install.sh."""
    result = subprocess.run(["shellcheck", "--severity=style", str(SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_install_writes_config_key_unit_and_enables_it(root, source):
    """A first install lays out config (0640), key (0600), unit, docs and the enable symlink."""
    result = install(root, source, key=KEY)
    assert result.returncode == 0, result.stderr
    etc = root / "etc/mira-agent"
    assert (etc / "agent.toml").read_text() == (source / "config/agent.toml").read_text()
    assert mode(etc) == 0o750 and mode(etc / "agent.toml") == 0o640
    assert (etc / "mira-api-key").read_text() == KEY + "\n" and mode(etc / "mira-api-key") == 0o600
    unit = root / "etc/systemd/system/mira-agent.service"
    assert unit.read_text() == (source / "systemd/mira-agent.service").read_text()
    link = root / "etc/systemd/system/multi-user.target.wants/mira-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/mira-agent.service"
    if (source / "hardware/README.md").exists():
        assert (root / "opt/mira-agent/doc/hardware/README.md").exists()


def test_host_commands_are_printed_not_run_and_never_show_the_key(root, source):
    """apt, user, venv, pip and systemctl steps are printed; the key appears in no output."""
    result = install(root, source, key=KEY)
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    joined = "\n".join(commands)
    assert "apt-get install -y -qq --no-install-recommends" in joined and "portaudio19-dev" in joined
    assert any(c.startswith("useradd --system --user-group --home-dir /var/lib/mira-agent") for c in commands)
    assert "usermod --append --groups audio\\,gpio\\,spi mira-agent" in commands
    assert any(c.endswith("pip install --quiet --disable-pip-version-check --upgrade "
                          f"{source}\\[device\\]") for c in commands)
    assert commands[-1] == "systemctl restart mira-agent.service"
    assert KEY not in result.stdout + result.stderr


def test_running_again_keeps_the_edited_config_and_the_key(root, source):
    """The second run is an upgrade: the user's config and key stay, the example is refreshed."""
    assert install(root, source, key=KEY).returncode == 0
    config = root / "etc/mira-agent/agent.toml"
    config.write_text("# edited by the user\n")
    again = install(root, source)
    assert again.returncode == 0, again.stderr
    assert config.read_text() == "# edited by the user\n"
    assert (root / "etc/mira-agent/mira-api-key").read_text() == KEY + "\n"
    assert (root / "etc/mira-agent/agent.toml.example").read_text() == (source / "config/agent.toml").read_text()
    assert "kept /etc/mira-agent/agent.toml" in again.stdout and "kept the API key" in again.stdout


def test_key_from_stdin_replaces_the_old_one(root, source):
    """--key-stdin reads the key from standard input (never argv) and replaces the stored one."""
    assert install(root, source, key=KEY).returncode == 0
    result = install(root, source, "--key-stdin", stdin="sk-new-key-987654\n")
    assert result.returncode == 0, result.stderr
    keyfile = root / "etc/mira-agent/mira-api-key"
    assert keyfile.read_text() == "sk-new-key-987654\n" and mode(keyfile) == 0o600
    assert "sk-new-key" not in result.stdout + result.stderr


def test_without_a_key_it_installs_but_does_not_start(root, source):
    """No key anywhere: the unit is enabled, not started, and the message says where the key goes."""
    result = install(root, source)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/mira-agent/mira-api-key").exists()
    assert "put it in /etc/mira-agent/mira-api-key" in result.stdout
    assert "+ systemctl restart" not in result.stdout
    assert "start it once the key is in place: systemctl start mira-agent.service" in result.stdout


def test_porcupine_key_is_stored_privately_when_given(root, source):
    """PORCUPINE_ACCESS_KEY is written to its own 0600 file for the optional credential."""
    result = install(root, source, key=KEY, extra_env={"PORCUPINE_ACCESS_KEY": "pv-key-abcdef"})
    assert result.returncode == 0, result.stderr
    path = root / "etc/mira-agent/porcupine-access-key"
    assert path.read_text() == "pv-key-abcdef\n" and mode(path) == 0o600
    assert "pv-key-abcdef" not in result.stdout + result.stderr


def test_uninstall_removes_program_and_unit_but_keeps_config(root, source):
    """--uninstall disables and removes the unit and /opt/mira-agent; the config and key stay."""
    assert install(root, source, key=KEY).returncode == 0
    result = install(root, source, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/systemd/system/mira-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/mira-agent.service").is_symlink()
    assert not (root / "opt/mira-agent").exists()
    assert (root / "etc/mira-agent/agent.toml").exists() and (root / "etc/mira-agent/mira-api-key").exists()


def test_purge_also_removes_config_keys_and_the_user(root, source):
    """--uninstall --purge removes /etc/mira-agent and deletes the system user."""
    assert install(root, source, key=KEY).returncode == 0
    result = install(root, source, "--uninstall", "--purge")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/mira-agent").exists()
    assert "+ userdel mira-agent" in result.stdout


def test_dry_mode_without_a_root_is_refused(source):
    """MIRA_INSTALL_DRY=1 alone would still write to /: it is refused."""
    env = {**os.environ, "MIRA_INSTALL_DRY": "1"}
    result = subprocess.run(["bash", str(SCRIPT), "--source", str(source)], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "needs --root DIR" in result.stderr


def test_a_source_without_the_config_is_refused(root, tmp_path):
    """A folder that is not a mira-agent checkout gets a message naming the missing file."""
    result = install(root, tmp_path, key=KEY)
    assert result.returncode == 1
    assert f"{tmp_path}/config/agent.toml is missing" in result.stderr
    assert not (root / "etc").exists()


def test_unknown_option_is_refused(root, source):
    """A misspelt option stops the script before it changes anything."""
    result = install(root, source, "--unistall")
    assert result.returncode == 1 and "unknown option --unistall" in result.stderr
    assert not (root / "etc").exists()


def test_without_systemctl_the_enable_link_is_made_by_hand(root, source, tmp_path):
    """In a bare build container without systemctl the WantedBy= symlink is still made and removed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "id", "install", "mkdir", "chmod", "mv", "rm", "cp",
                 "mktemp", "ln", "grep", "uname", "dpkg", "env", "getent"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    assert not (bin_dir / "systemctl").exists()
    path_env = {"PATH": str(bin_dir)}
    assert install(root, source, key=KEY, extra_env=path_env).returncode == 0
    link = root / "etc/systemd/system/multi-user.target.wants/mira-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/mira-agent.service"
    assert install(root, source, "--uninstall", extra_env=path_env).returncode == 0
    assert not link.is_symlink()
