"""`mira-agent check`: each row against real parts (loopback sockets, TLS, PortAudio, wake model, mock pins)."""

import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent import config
from agent.errors import EX_CONFIG
from agent.service import check
from agent.service.check import CheckRow, format_rows, run_checks

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-mira-check-0123456789"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def cfg(tmp_path: Path, text: str = "") -> config.Config:
    return config.load(write_config(tmp_path, text))


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    """No key from any source, and the service's key file pointed at a path that does not exist."""
    for name in ("MIRA_API_KEY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(check, "SERVICE_KEY_FILE", tmp_path / "no-such-key")


@pytest.fixture
def listener():
    """A TCP socket listening on 127.0.0.1 that never accepts (the kernel completes connects)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def tls_server(certificate):
    """A TLS server on 127.0.0.1 that completes handshakes (bounded: 4 connections at most)."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(5)

    def serve():
        for _ in range(4):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as t:
                    t.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
    srv.close()
    thread.join(5)


# --- server ---------------------------------------------------------------------------------

def test_server_reachable_over_tcp(tmp_path, listener):
    """A loopback ws:// server that accepts connections is reported reachable."""
    row = check.check_server(cfg(tmp_path, f'[server]\nurl = "ws://127.0.0.1:{listener}/v1/realtime"\n'))
    assert row.ok is True and row.detail.startswith(f"127.0.0.1:{listener} reachable")


def test_server_refusing_is_a_failure_with_its_fix(tmp_path):
    """A closed port fails with 'refused' and the fix names [server] url."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    row = check.check_server(cfg(tmp_path, f'[server]\nurl = "ws://127.0.0.1:{port}"\n'))
    assert row.ok is False and "refused" in row.detail and "[server] url" in row.fix


def test_untrusted_certificate_fails_and_points_at_the_clock(tmp_path, tls_server):
    """A self-signed certificate is not accepted by the default trust store; the fix mentions the clock."""
    row = check.check_server(cfg(tmp_path, f'[server]\nurl = "wss://127.0.0.1:{tls_server}/v1/realtime"\n'))
    assert row.ok is False and "certificate was not accepted" in row.detail
    assert "timedatectl" in row.fix


def test_tls_handshake_succeeds_with_a_trusted_certificate(tmp_path, tls_server, certificate):
    """With the certificate trusted, the TLS handshake completes and its version is shown."""
    context = ssl.create_default_context(cafile=str(certificate[0]))
    row = check.check_server(cfg(tmp_path, f'[server]\nurl = "wss://127.0.0.1:{tls_server}"\n'), tls=context)
    assert row.ok is True and "TLS OK (TLSv1." in row.detail


def test_silent_server_times_out_within_the_limit(tmp_path, listener):
    """A server that never answers the TLS handshake fails after the timeout, not later."""
    row = check.check_server(cfg(tmp_path, f'[server]\nurl = "wss://127.0.0.1:{listener}"\n'), timeout_s=0.3)
    assert row.ok is False and row.detail == f"no answer from 127.0.0.1:{listener} within 0.3 s"


# --- key ------------------------------------------------------------------------------------

def test_key_from_environment_is_reported_present_never_shown(tmp_path, no_key, monkeypatch):
    """The key's source is named; its value appears nowhere in the table."""
    monkeypatch.setenv("MIRA_API_KEY", KEY)
    row = check.check_key(cfg(tmp_path))
    assert row == CheckRow("API key", True, "present (from the MIRA_API_KEY environment variable)")
    assert KEY not in format_rows([row])


def test_key_from_systemd_credential_is_named(tmp_path, no_key, monkeypatch):
    """A credential in $CREDENTIALS_DIRECTORY is reported as such."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mira-api-key").write_text(KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert check.check_key(cfg(tmp_path)).detail == "present (from the systemd credential mira-api-key)"


def test_missing_key_fails_with_how_to_store_it(tmp_path, no_key):
    """No key anywhere: the row fails and the fix shows install.sh --key-stdin."""
    row = check.check_key(cfg(tmp_path))
    assert row.ok is False and "--key-stdin" in row.fix


def test_service_key_file_is_checked_when_run_by_hand(tmp_path, no_key, monkeypatch):
    """Run outside systemd, the credential's source file counts if it is private and not empty."""
    keyfile = tmp_path / "mira-api-key"
    keyfile.write_text(KEY + "\n")
    monkeypatch.setattr(check, "SERVICE_KEY_FILE", keyfile)
    keyfile.chmod(0o644)
    row = check.check_key(cfg(tmp_path))
    assert row.ok is False and row.fix == f"sudo chmod 600 {keyfile}"
    keyfile.chmod(0o600)
    assert check.check_key(cfg(tmp_path)).ok is True


def test_world_readable_key_file_fails_with_chmod(tmp_path, no_key):
    """[server] api_key_file readable by others fails with the chmod to run."""
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY)
    keyfile.chmod(0o644)
    row = check.check_key(cfg(tmp_path, f'[server]\napi_key_file = "{keyfile}"\n'))
    assert row.ok is False and "chmod 600" in row.detail and KEY not in row.detail


# --- GPIO -----------------------------------------------------------------------------------

@pytest.fixture
def pin_factory(monkeypatch):
    from gpiozero import Device
    saved = Device.pin_factory
    Device.pin_factory = None
    yield monkeypatch
    if Device.pin_factory is not None and Device.pin_factory is not saved:
        Device.pin_factory.close()
    Device.pin_factory = saved


def test_gpio_not_used_without_button_or_leds(tmp_path):
    """No pins configured: the row is neutral, not a failure."""
    assert check.check_gpio(cfg(tmp_path)).ok is None


def test_gpio_reports_the_pin_factory_and_pins(tmp_path, pin_factory):
    """With gpiozero's mock factory the row names it and the BCM pins in use."""
    pin_factory.setenv("GPIOZERO_PIN_FACTORY", "mock")
    row = check.check_gpio(cfg(tmp_path, '[button]\npin = 17\nmute_pin = 27\n'
                                         '[leds]\nkind = "single"\npins = { listening = 22 }\n'))
    assert row == CheckRow("GPIO", True, "MockFactory, BCM pins 17, 22, 27")


def test_gpio_without_any_pin_factory_fails_with_the_reasons(tmp_path, pin_factory):
    """On a machine with no GPIO every factory fails: the row says why and how to fix it."""
    pin_factory.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    row = check.check_gpio(cfg(tmp_path, "[button]\npin = 17\n"))
    assert row.ok is False and "no pin factory could start" in row.detail
    assert "GPIOZERO_PIN_FACTORY=mock" in row.fix


def test_gpio_pin_off_the_header_fails(tmp_path):
    """A BCM number past 27 is not on the header: the config row fails naming button.pin."""
    rows = check.run_checks(write_config(tmp_path, "[button]\npin = 40\n"))
    assert rows[0].name == "config" and rows[0].ok is False and "button.pin" in rows[0].detail


# --- wake word ------------------------------------------------------------------------------

def test_wake_word_model_loads(tmp_path):
    """The bundled hey_jarvis model really loads."""
    row = check.check_wake(cfg(tmp_path, '[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n'))
    assert row.ok is True and row.detail.startswith("openwakeword hey_jarvis loaded")


def test_bad_wake_model_fails_with_the_model_names(tmp_path):
    """A model file that is not TFLite fails, and the fix lists the built-in models."""
    (tmp_path / "bad.tflite").write_bytes(b"not a model at all")
    row = check.check_wake(cfg(tmp_path, '[wake]\nmodel = "bad.tflite"\n'))
    assert row.ok is False and "hey_jarvis" in row.fix


def test_porcupine_without_access_key_fails_before_going_online(tmp_path, monkeypatch):
    """Porcupine with no AccessKey anywhere fails with where to put it."""
    for name in ("PORCUPINE_ACCESS_KEY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    row = check.check_wake(cfg(tmp_path, '[wake]\nengine = "porcupine"\n'))
    assert row.ok is False and "porcupine-access-key" in row.fix


# --- audio, config and the whole table ------------------------------------------------------

def test_file_backend_rows(tmp_path):
    """The file backend checks the input WAV exists and the output has a folder."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    rows = check.check_audio(cfg(tmp_path, '[audio]\nbackend = "file"\ninput_file = "in.wav"\n'
                                           'output_file = "missing/out.wav"\n'))
    assert [(r.name, r.ok) for r in rows] == [("microphone", True), ("speaker", False)]


def test_bad_config_fails_first_and_skips_the_rest(tmp_path):
    """An invalid config is the only failing row; the others wait for it."""
    rows = run_checks(write_config(tmp_path, "[audio]\nvolume = 500\n"))
    assert rows[0].ok is False and "audio.volume" in rows[0].detail
    assert all(r.ok is None for r in rows[1:])
    assert check.main(str(tmp_path / "agent.toml")) == EX_CONFIG


def test_table_shows_fixes_under_failing_rows_and_counts_problems():
    """Failing rows get a 'fix:' line; the last line counts the problems."""
    text = format_rows([CheckRow("config", True, "ok"), CheckRow("server", False, "refused", "check url"),
                        CheckRow("GPIO", None, "not used")])
    lines = text.splitlines()
    assert lines[0].split() == ["ok", "config", "ok"]
    assert lines[1].split()[:2] == ["FAIL", "server"] and lines[2].strip() == "fix: check url"
    assert lines[3].split()[0] == "-" and lines[-1] == "1 problem found."


@pytest.mark.slow
def test_check_command_end_to_end_on_a_virtual_sound_card(tmp_path, listener):
    """`mira-agent check` in a child process: PortAudio sees an ALSA null card, every row passes."""
    asound = tmp_path / "asound.conf"
    asound.write_text("pcm.mic { type null }\npcm.spk { type null }\n"
                      'pcm.!default { type asym capture.pcm "mic" playback.pcm "spk" }\n')
    path = write_config(tmp_path, f'[server]\nurl = "ws://127.0.0.1:{listener}/v1/realtime"\n'
                                  '[audio]\ninput_device = "mic"\noutput_device = "spk"\n'
                                  '[wake]\nengine = "none"\n')
    env = {**os.environ, "ALSA_CONFIG_PATH": str(asound), "JACK_NO_START_SERVER": "1",
           "MIRA_API_KEY": KEY}
    env.pop("CREDENTIALS_DIRECTORY", None)
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(path)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok    microphone  mic: 1 ch at 48000" in out
    assert "ok    speaker     spk: 1 ch at 48000" in out
    assert "all good." in out and KEY not in out + result.stderr
