"""systemd/install.sh: shellcheck clean, and real runs into a throwaway root (host commands printed).

The root carries the /etc/os-release the installer decides by; a `dpkg` first on PATH fakes the
architecture. A refusal is asserted to leave the root exactly as it was and to print no command.
"""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agent.demo import write_wav
from agent.devserver import DevServer

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "systemd" / "install.sh"
KEY = "sk-mira-test-0123456789abcdef"

BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
RASPBIAN = ('PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nID_LIKE=debian\n'
            'VERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'


@pytest.fixture
def source(tmp_path) -> Path:
    """A source tree with what the script reads (the repo's own files; agent/ linked, not copied)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(REPO / "systemd", src / "systemd")
    shutil.copytree(REPO / "config", src / "config")
    shutil.copytree(REPO / "hardware", src / "hardware")
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, src)
    (src / "agent").symlink_to(REPO / "agent")
    return src


@pytest.fixture
def root(tmp_path) -> Path:
    """An empty root that says it is Debian 12."""
    path = tmp_path / "root"
    (path / "etc").mkdir(parents=True)
    (path / "etc/os-release").write_text(BOOKWORM)
    return path


def fake_arch(tmp_path: Path, arch: str) -> dict:
    """PATH with a `dpkg` that reports `arch` as this machine's architecture."""
    bin_dir = tmp_path / f"bin-{arch}"
    bin_dir.mkdir(exist_ok=True)
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(f'#!/bin/sh\n[ "$1" = --print-architecture ] && {{ echo {arch}; exit 0; }}\n'
                    f'exec {shutil.which("dpkg") or "false"} "$@"\n')
    dpkg.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def install(root: Path, source: Path | str, *args: str, stdin: str = "", extra_env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MIRA_API_KEY", "PORCUPINE_ACCESS_KEY")}
    env.update(extra_env or {})
    return subprocess.run(["bash", str(SCRIPT), "--root", str(root), "--source", str(source), *args],
                          input=stdin, capture_output=True, text=True, env=env, timeout=120, cwd=cwd)


def install_with_key(root: Path, source: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return install(root, source, "--key-stdin", *args, stdin=KEY + "\n", **kw)


def commands(result: subprocess.CompletedProcess) -> list[str]:
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def pip_install(result: subprocess.CompletedProcess) -> str:
    return next(c for c in commands(result) if " install " in c and "constraint" in c)


def snapshot(path: Path) -> dict:
    """Every file, folder and link under path with its content, mode and target."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", stat.S_IMODE(p.stat().st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(p.stat().st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def assert_refused(result, root: Path, before: dict, says: str) -> None:
    """Exit 1 with `says` on stderr, no command printed, the root as it was."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert says in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    assert commands(result) == []
    assert snapshot(root) == before


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
    result = install_with_key(root, source)
    assert result.returncode == 0, result.stderr
    etc = root / "etc/mira-agent"
    assert (etc / "agent.toml").read_text() == (source / "config/agent.toml").read_text()
    assert mode(etc) == 0o750 and mode(etc / "agent.toml") == 0o640
    assert (etc / "mira-api-key").read_text() == KEY + "\n" and mode(etc / "mira-api-key") == 0o600
    unit = root / "etc/systemd/system/mira-agent.service"
    assert unit.read_text() == (source / "systemd/mira-agent.service").read_text()
    link = root / "etc/systemd/system/multi-user.target.wants/mira-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/mira-agent.service"
    assert (root / "opt/mira-agent/doc/hardware/README.md").exists()


def test_host_commands_are_printed_not_run_and_never_show_the_key(root, source):
    """apt, user, venv, pip and systemctl steps are printed; the key appears in no output."""
    result = install_with_key(root, source)
    cmds = commands(result)
    joined = "\n".join(cmds)
    assert "apt-get install -y -qq --no-install-recommends" in joined
    assert "portaudio19-dev" in joined and "procps" in joined
    assert any(c.startswith("useradd --system --user-group --home-dir /var/lib/mira-agent") for c in cmds)
    assert "usermod --append --groups audio\\,gpio\\,spi mira-agent" in cmds
    assert pip_install(result).endswith("/mira-agent\\[device\\]")
    assert cmds[-1] == "systemctl restart mira-agent.service"
    assert KEY not in result.stdout + result.stderr


def test_pip_installs_the_locked_versions_from_a_copy_and_shows_progress(root, source):
    """pip gets constraints.txt, a staged copy outside the checkout (no root-owned build/ or
    *.egg-info left there), and no --quiet, so its progress shows during the long step."""
    result = install_with_key(root, source)
    pip = pip_install(result)
    assert "--upgrade --constraint " in pip and "--quiet" not in pip and "--progress-bar on" in pip
    staged = Path(pip.rsplit(" ", 1)[1].replace("\\", "").removesuffix("[device]"))
    assert pip.split("--constraint ")[1].split(" ")[0] == f"{staged}/constraints.txt"
    assert staged.is_absolute() and not staged.is_relative_to(source)
    assert not staged.parent.exists()  # the copy is gone once the installer exits
    assert not list(source.glob("build")) and not list(source.glob("*.egg-info"))
    assert "pip's progress follows" in result.stdout


def test_the_lock_covers_every_direct_dependency_with_an_exact_version():
    """constraints.txt pins each requirement of pyproject's base and device extras (==), and
    pyproject bounds each one below its next major."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    extras = project["optional-dependencies"]

    def requirements(extra: str) -> list[str]:
        out = []
        for r in extras[extra]:
            if r.startswith("mira-agent["):
                out += [x for e in r[len("mira-agent["):].rstrip("]").split(",") for x in requirements(e)]
            else:
                out.append(r)
        return out
    for requirement in project["dependencies"] + requirements("device"):
        name = requirement.split(";")[0]
        bare = name.split("~")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
        assert bare in pins, f"{bare} is not in constraints.txt: run make lock"
        assert "~=" in name or "<" in name, f"{name} has no upper bound"


def test_running_again_keeps_the_edited_config_and_the_key(root, source):
    """The second run is an upgrade: the user's config and key stay, the example is refreshed."""
    assert install_with_key(root, source).returncode == 0
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
    assert install_with_key(root, source).returncode == 0
    result = install(root, source, "--key-stdin", stdin="sk-new-key-987654\n")
    assert result.returncode == 0, result.stderr
    keyfile = root / "etc/mira-agent/mira-api-key"
    assert keyfile.read_text() == "sk-new-key-987654\n" and mode(keyfile) == 0o600
    assert "sk-new-key" not in result.stdout + result.stderr


def test_key_from_a_file_is_stored_and_never_shown(root, source, tmp_path):
    """--key-file reads the key from a file; surrounding blank lines and spaces are dropped."""
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(f"\n  {KEY}  \r\n\n")
    result = install(root, source, "--key-file", str(keyfile))
    assert result.returncode == 0, result.stderr
    assert (root / "etc/mira-agent/mira-api-key").read_text() == KEY + "\n"
    assert KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("stdin, says", [
    ("", "--key-stdin (standard input) gave an empty API key"),
    ("  \n\n", "--key-stdin (standard input) gave an empty API key"),
    (f"{KEY}\n{KEY}\n", "holds 2 lines; it must hold the API key alone"),
    ("sk-\x01\x02-0123456789\n", "has characters a key cannot have"),
    ("sk-1\n", "the API key is 4 characters long"),
])
def test_a_bad_key_on_stdin_is_refused_before_anything_changes(root, source, stdin, says):
    """An empty, multi-line, binary or too short key stops the install before the first change."""
    before = snapshot(root)
    assert_refused(install(root, source, "--key-stdin", stdin=stdin), root, before, says)


def test_an_unreadable_key_file_is_refused_before_anything_changes(root, source, tmp_path):
    """A --key-file that does not exist is named, and nothing changes."""
    before = snapshot(root)
    result = install(root, source, "--key-file", str(tmp_path / "nope.txt"))
    assert_refused(result, root, before, f"cannot read the API key file {tmp_path / 'nope.txt'}")


@pytest.mark.parametrize("variable", ["MIRA_API_KEY", "PORCUPINE_ACCESS_KEY"])
def test_a_key_in_the_environment_is_refused(root, source, variable):
    """Keys come only from stdin or a file: one in the environment is refused with the way to pass it."""
    before = snapshot(root)
    result = install(root, source, extra_env={variable: KEY})
    assert_refused(result, root, before, f"{variable} is set in the environment")
    assert "--key-stdin < key.txt or --key-file key.txt" in result.stderr
    assert KEY not in result.stdout + result.stderr


def test_help_never_suggests_a_key_on_a_command_line(root, source):
    """--help shows --key-stdin and --key-file, and no KEY=... assignment to type into a shell."""
    result = install(root, source, "--help")
    assert result.returncode == 0
    assert "--key-stdin < key.txt" in result.stdout and "--key-file key.txt" in result.stdout
    assert "_KEY=" not in result.stdout and "--button-only" in result.stdout
    assert "set -euo" not in result.stdout


def test_purge_without_uninstall_is_refused(root, source):
    """--purge alone is a mistake, not an install: refused, nothing changes."""
    before = snapshot(root)
    result = install(root, source, "--purge")
    assert_refused(result, root, before, "--purge only goes with --uninstall")


def test_a_relative_source_is_read_as_a_path(root, source):
    """--source src (no slash) is resolved to the folder's absolute path, which pip reads as a path."""
    result = install_with_key(root, Path("src"), cwd=source.parent)
    assert result.returncode == 0, result.stderr
    assert f"from {source} into /opt/mira-agent/venv" in result.stdout
    assert pip_install(result).split(" ")[-1].startswith("/")


def test_a_source_that_is_not_a_folder_is_refused(root, tmp_path):
    """--source naming nothing is refused by name."""
    before = snapshot(root)
    result = install_with_key(root, tmp_path / "nothing")
    assert_refused(result, root, before, f"--source {tmp_path / 'nothing'} is not a directory")


def test_without_a_key_it_installs_but_does_not_start(root, source):
    """No key anywhere: the unit is enabled, not started, and the message says how to give the key."""
    result = install(root, source)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/mira-agent/mira-api-key").exists()
    assert "systemctl restart" not in "\n".join(commands(result))
    assert "NOT started: no API key; store it with: sudo" in result.stdout
    assert "--key-stdin < key.txt" in result.stdout
    assert "then start it: sudo systemctl start mira-agent.service" in result.stdout


def test_porcupine_key_is_stored_privately_when_given(root, source, tmp_path):
    """--porcupine-key-file is written to its own 0600 file for the optional credential."""
    (tmp_path / "pv.txt").write_text("pv-key-abcdef\n")
    result = install_with_key(root, source, "--porcupine-key-file", str(tmp_path / "pv.txt"))
    assert result.returncode == 0, result.stderr
    path = root / "etc/mira-agent/porcupine-access-key"
    assert path.read_text() == "pv-key-abcdef\n" and mode(path) == 0o600
    assert "pv-key-abcdef" not in result.stdout + result.stderr


def test_uninstall_removes_program_and_unit_but_keeps_config(root, source):
    """--uninstall disables and removes the unit and /opt/mira-agent; the config and key stay."""
    assert install_with_key(root, source).returncode == 0
    result = install(root, source, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/systemd/system/mira-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/mira-agent.service").is_symlink()
    assert not (root / "opt/mira-agent").exists()
    assert (root / "etc/mira-agent/agent.toml").exists() and (root / "etc/mira-agent/mira-api-key").exists()


def test_purge_also_removes_config_keys_and_the_user(root, source):
    """--uninstall --purge removes /etc/mira-agent and deletes the system user."""
    assert install_with_key(root, source).returncode == 0
    result = install(root, source, "--uninstall", "--purge")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/mira-agent").exists()
    assert "+ userdel mira-agent" in result.stdout


def test_dry_mode_without_a_root_is_refused(source):
    """MIRA_INSTALL_DRY=1 alone would still write to /: it is refused."""
    env = {**os.environ, "MIRA_INSTALL_DRY": "1"}
    env.pop("MIRA_API_KEY", None)
    result = subprocess.run(["bash", str(SCRIPT), "--source", str(source)], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "needs --root DIR" in result.stderr


def test_a_source_without_the_config_is_refused(root, tmp_path):
    """A folder that is not a mira-agent checkout gets a message naming the missing file."""
    before = snapshot(root)
    result = install_with_key(root, tmp_path)
    assert_refused(result, root, before, f"{tmp_path}/config/agent.toml is missing")


def test_unknown_option_is_refused(root, source):
    """A misspelt option stops the script before it changes anything."""
    before = snapshot(root)
    assert_refused(install(root, source, "--unistall"), root, before, "unknown option --unistall")


def test_without_systemctl_the_enable_link_is_made_by_hand(root, source, tmp_path):
    """In a bare build container without systemctl the WantedBy= symlink is still made and removed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "id", "install", "mkdir", "chmod", "mv", "rm", "cp",
                 "mktemp", "ln", "grep", "uname", "dpkg", "env", "getent", "cat", "find", "awk"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    assert not (bin_dir / "systemctl").exists()
    path_env = {"PATH": str(bin_dir)}
    assert install_with_key(root, source, extra_env=path_env).returncode == 0
    link = root / "etc/systemd/system/multi-user.target.wants/mira-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/mira-agent.service"
    assert install(root, source, "--uninstall", extra_env=path_env).returncode == 0
    assert not link.is_symlink()


# --- platforms ------------------------------------------------------------------------------

@pytest.mark.parametrize("release, arch", [(BOOKWORM, "arm64"), (BOOKWORM, "amd64"),
                                           (TRIXIE, "arm64"), (TRIXIE, "amd64")])
def test_bookworm_and_trixie_on_arm64_and_amd64_install_in_full(root, source, tmp_path, release, arch):
    """The supported systems get the full install (wake word, echo canceller) with no warning;
    trixie on ARM also gets swig, which lgpio's build for Python 3.13 needs."""
    (root / "etc/os-release").write_text(release)
    result = install_with_key(root, source, extra_env=fake_arch(tmp_path, arch))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout + result.stderr
    assert pip_install(result).endswith("\\[device\\]")
    apt = next(c for c in commands(result) if c.startswith("env DEBIAN_FRONTEND"))
    assert (" swig" in apt) == (release == TRIXIE and arch == "arm64")
    assert "PYPI=1" in pip_install(result)
    assert commands(result)[-1] == "systemctl restart mira-agent.service"


def test_32_bit_raspberry_pi_os_is_refused_with_the_way_to_64_bit(root, source, tmp_path):
    """armhf: refused before any change, with the Pis that run 64-bit Raspberry Pi OS and where to get it."""
    (root / "etc/os-release").write_text(RASPBIAN)
    before = snapshot(root)
    result = install_with_key(root, source, extra_env=fake_arch(tmp_path, "armhf"))
    assert_refused(result, root, before, "32-bit Raspberry Pi OS (armhf) cannot run the wake word")
    assert "Zero 2 W" in result.stderr and "Raspberry Pi OS (64-bit)" in result.stderr
    assert "https://www.raspberrypi.com/software/" in result.stderr and "--button-only" in result.stderr


def test_button_only_on_armhf_is_a_reduced_install(root, source, tmp_path):
    """--button-only on armhf installs without the wake word and echo extras, with compilers for
    the wheels armhf lacks, and a config (loaded by the real loader) with both switched off."""
    (root / "etc/os-release").write_text(RASPBIAN)
    result = install_with_key(root, source, "--button-only", extra_env=fake_arch(tmp_path, "armhf"))
    assert result.returncode == 0, result.stderr
    assert "reduced install (--button-only): no wake word, no echo canceller" in result.stdout
    assert pip_install(result).endswith("\\[alsa\\,gpio\\,systemd\\]")
    apt = next(c for c in commands(result) if c.startswith("env DEBIAN_FRONTEND"))
    assert " g++ " in apt + " " and " cmake" in apt
    from agent import config
    settings = config.load(root / "etc/mira-agent/agent.toml").settings
    assert settings.wake.engine == "none" and not settings.echo.enabled and not settings.echo.barge_in
    example = config.load(source / "config/agent.toml").settings
    assert settings.model_copy(update={"wake": example.wake, "echo": example.echo}) == example


@pytest.mark.parametrize("release, arch, says", [
    (UBUNTU, "arm64", "Ubuntu 24.04 LTS (ubuntu noble) is not supported"),
    (None, "arm64", "unknown (unknown unknown) is not supported"),
    (BOOKWORM, "riscv64", "the riscv64 architecture is not supported"),
])
def test_an_unknown_system_is_refused_with_the_supported_list(root, source, tmp_path, release, arch, says):
    """An unknown distribution or architecture is refused, naming what is supported, changing nothing."""
    if release is None:
        (root / "etc/os-release").unlink()
    else:
        (root / "etc/os-release").write_text(release)
    before = snapshot(root)
    result = install_with_key(root, source, extra_env=fake_arch(tmp_path, arch))
    assert_refused(result, root, before, says)
    assert "Debian 12 (bookworm) or 13 (trixie), or Raspberry Pi OS Bookworm or Trixie, on arm64 or amd64" \
        in result.stderr and "--force" in result.stderr


def test_force_installs_on_an_unknown_system_with_a_warning(root, source, tmp_path):
    """--force installs on an unsupported distribution, saying so."""
    (root / "etc/os-release").write_text(UBUNTU)
    result = install_with_key(root, source, "--force", extra_env=fake_arch(tmp_path, "arm64"))
    assert result.returncode == 0, result.stderr
    assert "warning: Ubuntu 24.04 LTS is not a supported system; installing anyway (--force)" in result.stdout
    assert commands(result)[-1] == "systemctl restart mira-agent.service"


# --- validation before the start, with the real mira-agent -----------------------------------

@pytest.fixture
def venv(root) -> Path:
    """/opt/mira-agent/venv in the root, running this checkout's mira-agent (so `check` is real)."""
    bin_dir = root / "opt/mira-agent/venv/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    program = bin_dir / "mira-agent"
    program.write_text(f'#!/bin/sh\nexec {sys.executable} -m agent.cli "$@"\n')
    program.chmod(0o755)
    return bin_dir


@pytest.fixture
def server():
    with DevServer(api_key=KEY) as s:
        yield s


def live_config(root: Path, url: str, extra: str = "") -> Path:
    """/etc/mira-agent/agent.toml in the root: the file backend with a real wake word model."""
    etc = root / "etc/mira-agent"
    etc.mkdir(parents=True, exist_ok=True)
    write_wav(etc / "in.wav", np.zeros(24000, dtype=np.int16))
    path = etc / "agent.toml"
    path.write_text(f'[server]\nurl = "{url}"\n[audio]\nbackend = "file"\ninput_file = "in.wav"\n'
                    f'output_file = "out.wav"\n[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n{extra}')
    return path


@pytest.mark.slow
def test_a_config_that_works_here_is_checked_then_started(root, source, venv, server):
    """With a key and a config that works, the installer runs mira-agent check and then starts."""
    live_config(root, server.url)
    result = install_with_key(root, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checking /etc/mira-agent/agent.toml on this box" in result.stdout
    assert "    " in result.stdout and "microphone" in result.stdout
    assert commands(result)[-1] == "systemctl restart mira-agent.service"
    assert KEY not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_config_that_cannot_work_here_is_installed_but_not_started(root, source, venv, server):
    """A config that fails the check: installed and enabled, the failing row and its fix shown,
    what to edit and how to start said, and nothing started."""
    config = live_config(root, server.url)
    (config.parent / "in.wav").unlink()
    result = install_with_key(root, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "input_file" in result.stdout and "does not exist" in result.stdout
    assert "NOT started: the check above found what would stop it; edit /etc/mira-agent/agent.toml" \
        in result.stdout
    assert "then start it: sudo systemctl start mira-agent.service" in result.stdout
    assert "systemctl restart" not in "\n".join(commands(result))
    assert (root / "etc/systemd/system/multi-user.target.wants/mira-agent.service").is_symlink()


@pytest.mark.slow
def test_button_only_without_a_button_is_installed_but_not_started(root, source, venv, tmp_path):
    """The reduced install's config has no wake word: until [button] pin is set nothing can start
    a conversation, which the check says, so the service is installed and enabled, not started."""
    (root / "etc/os-release").write_text(RASPBIAN)
    result = install_with_key(root, source, "--button-only", extra_env=fake_arch(tmp_path, "armhf"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing can start a conversation: the wake word is off and no talk button is set" in result.stdout
    assert "NOT started" in result.stdout and "systemctl restart" not in "\n".join(commands(result))
