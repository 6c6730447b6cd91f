"""`mira-agent check`: each row against real parts (loopback sockets, TLS, PortAudio, wake model, mock pins)."""

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from agent import config
from agent.errors import EX_CONFIG
from agent.devserver import DevServer
from agent.service import check, tool_check
from agent.service.check import CheckRow, format_rows, run_checks
from agent.service.sandbox import Account, Sandbox

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


# --- server: a real session -------------------------------------------------------------------

def server_cfg(tmp_path: Path, url: str, timeout_s: float = 10.0) -> config.Config:
    return cfg(tmp_path, f'[server]\nurl = "{url}"\nconnect_timeout_s = {timeout_s}\n')


def test_session_opens_and_closes_with_the_right_key(tmp_path):
    """Against the project's server with its key: session.created arrives, the row passes, the
    session is closed cleanly (1000) and the key travelled as the subprotocol."""
    with DevServer(api_key=KEY) as server:
        row = check.check_session(server_cfg(tmp_path, server.url), KEY)
        session = server.recorder.wait_for(lambda: server.sessions and server.sessions[-1].closed
                                           and server.sessions[-1], timeout=5)
    assert row.ok is True and row.detail.startswith("127.0.0.1: a session opened and closed in ")
    assert "about a second of connection time" in row.detail
    assert session.close_code == 1000


def test_refused_key_fails_with_how_to_store_the_right_one(tmp_path):
    """The server refuses the key (HTTP 401): the row says so and the fix is the installer's --key-stdin."""
    with DevServer(api_key=KEY) as server:
        row = check.check_session(server_cfg(tmp_path, server.url), "sk-mira-not-this-one")
    assert row.ok is False and row.detail == "127.0.0.1 refused the API key (HTTP 401)"
    assert "--key-stdin" in row.fix and "systemctl reload mira-agent" in row.fix
    assert "sk-mira-not-this-one" not in row.detail + row.fix


def test_a_listener_that_never_answers_the_handshake_fails_after_the_timeout(tmp_path, listener):
    """TCP is accepted but the WebSocket handshake never answered: a failure naming the timeout."""
    row = check.check_session(server_cfg(tmp_path, f"ws://127.0.0.1:{listener}/v1/realtime", 0.5), KEY)
    assert row.ok is False and row.detail == "offline: 127.0.0.1 did not answer the handshake within 0.5 s"
    assert "[server] url" in row.fix and "answers timers, the time and volume itself" in row.fix


def test_a_silent_tls_server_fails_after_the_timeout(tmp_path, listener):
    """wss:// to a listener that never answers the TLS handshake: the TLS stage is named."""
    row = check.check_session(server_cfg(tmp_path, f"wss://127.0.0.1:{listener}/v1/realtime", 0.5), KEY)
    assert row.ok is False and row.detail == "offline: 127.0.0.1 did not answer the TLS handshake within 0.5 s"


def test_untrusted_certificate_fails_and_points_at_the_clock(tmp_path, tls_server):
    """A self-signed certificate is not accepted; the fix mentions the clock."""
    row = check.check_session(server_cfg(tmp_path, f"wss://127.0.0.1:{tls_server}/v1/realtime"), KEY)
    assert row.ok is False and "TLS certificate of 127.0.0.1 is not trusted" in row.detail
    assert "timedatectl" in row.fix


def test_server_refusing_is_a_failure_with_its_fix(tmp_path):
    """A closed port fails with 'refused' and the fix names [server] url."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    row = check.check_session(server_cfg(tmp_path, f"ws://127.0.0.1:{port}"), KEY)
    assert row.ok is False and row.detail == "offline: 127.0.0.1 refused the connection"
    assert "[server] url" in row.fix and "answers timers, the time and volume itself" in row.fix


def test_no_key_leaves_the_session_unchecked(tmp_path):
    """Without a key no session is tried (the key row already fails)."""
    assert check.check_session(server_cfg(tmp_path, "ws://127.0.0.1:9/v1/realtime"), None).ok is None


def test_name_resolution_failure_is_a_dns_sentence():
    """websocket-client's WebSocketAddressException (a failed DNS lookup) reads as words, not a class."""
    import websocket

    from agent.realtime.client import _handshake_failure
    e = websocket.WebSocketAddressException(socket.gaierror(-2, "Name or service not known"))
    text = str(_handshake_failure(e, "api.vmira.ai", 10.0))
    assert text.startswith("cannot resolve api.vmira.ai (DNS); check the network connection")
    assert "Exception" not in text


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


def _check_cli(tmp_path: Path, config_path: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    asound = tmp_path / "asound.conf"
    asound.write_text("pcm.mic { type null }\npcm.spk { type null }\n"
                      'pcm.!default { type asym capture.pcm "mic" playback.pcm "spk" }\n')
    env = {**os.environ, "ALSA_CONFIG_PATH": str(asound), "JACK_NO_START_SERVER": "1",
           "MIRA_API_KEY": key}
    env.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(config_path), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=90)


@pytest.mark.slow
def test_check_command_end_to_end_on_a_virtual_sound_card(tmp_path):
    """`mira-agent check` in a child process: PortAudio sees an ALSA null card, the wake model
    loads, a real session opens with the project's server; every row passes, exit 0."""
    with DevServer(api_key=KEY) as server:
        path = write_config(tmp_path, f'[server]\nurl = "{server.url}"\n'
                                      '[audio]\ninput_device = "mic"\noutput_device = "spk"\n')
        result = _check_cli(tmp_path, path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok    microphone  mic: 1 ch at 48000" in out
    assert "ok    speaker     spk: 1 ch at 48000" in out
    assert "ok    trigger     the wake word starts a conversation" in out
    assert "ok    server      127.0.0.1: a session opened and closed in" in out
    assert "all good." in out and KEY not in out + result.stderr
    assert result.stderr == "", result.stderr  # no library chatter (TFLite, ALSA) around the table


@pytest.mark.slow
def test_check_fails_on_a_refused_key_a_missing_model_and_no_trigger(tmp_path):
    """What 'all good' used to hide: a refused key, a missing wake model (so nothing can start a
    conversation): each row fails with a fix that names the setting or command; exit 1."""
    with DevServer(api_key=KEY) as server:
        path = write_config(tmp_path, f'[server]\nurl = "{server.url}"\n'
                                      '[audio]\ninput_device = "mic"\noutput_device = "spk"\n'
                                      '[wake]\nmodel = "models/mine.tflite"\n')
        result = _check_cli(tmp_path, path, key="sk-mira-refused-0123")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    def fix_of(name: str) -> str:
        (i,) = [i for i, x in enumerate(lines) if x.split()[:2] == ["FAIL", name]]
        assert lines[i + 1].strip().startswith("fix: ")
        return lines[i + 1]

    assert "[wake] model" in fix_of("wake") or "built-in model" in fix_of("wake")
    assert "[button] pin" in fix_of("trigger") and "--key-stdin" in fix_of("server")
    assert "3 problems found." in result.stdout
    assert "sk-mira-refused-0123" not in result.stdout + result.stderr


@pytest.mark.slow
def test_offline_check_opens_no_connection(tmp_path):
    """--offline: every row but the server; the server row is marked not checked and nothing
    connects to the configured address."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        path = write_config(tmp_path, f'[server]\nurl = "ws://127.0.0.1:{srv.getsockname()[1]}/v1/realtime"\n'
                                      '[audio]\ninput_device = "mic"\noutput_device = "spk"\n')
        result = _check_cli(tmp_path, path, "--offline")
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()  # no connection is waiting: the check did not dial
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-     server      not checked (--offline)" in result.stdout
    assert "ok    trigger" in result.stdout
    assert result.stdout.rstrip().endswith("no problem found; not checked: server.")


# --- trigger --------------------------------------------------------------------------------

def _trigger(tmp_path: Path, text: str) -> CheckRow:
    c = cfg(tmp_path, text)
    return check.check_trigger(c, check.check_wake(c, True), check.check_gpio(c))


def test_trigger_names_the_wake_word_that_loaded(tmp_path):
    """The bundled model loads: the wake word is what starts a conversation."""
    row = _trigger(tmp_path, '[wake]\nmodel = "hey_jarvis"\n')
    assert row == CheckRow("trigger", True, "the wake word starts a conversation")


def test_no_wake_word_and_no_button_is_a_failure(tmp_path):
    """engine none and no [button] pin: nothing can start a conversation, and the fix names both settings."""
    row = _trigger(tmp_path, '[wake]\nengine = "none"\n')
    assert row.ok is False
    assert row.detail == "nothing can start a conversation: the wake word is off and no talk button is set"
    assert "[wake] engine" in row.fix and "[button] pin" in row.fix


def test_a_button_on_mock_pins_is_a_trigger(tmp_path, pin_factory):
    """With the wake word off, a talk button on a working pin factory still starts conversations."""
    pin_factory.setenv("GPIOZERO_PIN_FACTORY", "mock")
    row = _trigger(tmp_path, '[wake]\nengine = "none"\n[button]\npin = 17\n')
    assert row == CheckRow("trigger", True, "the button on BCM 17 starts a conversation")


def test_a_button_without_gpio_is_no_trigger(tmp_path, pin_factory):
    """A button configured where no pin factory starts is not a way to start a conversation."""
    pin_factory.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    row = _trigger(tmp_path, '[wake]\nengine = "none"\n[button]\npin = 17\n')
    assert row.ok is False and "the talk button's GPIO is not usable" in row.detail


def test_missing_wake_model_file_fails_the_wake_row_with_the_setting(tmp_path):
    """A configured .tflite that is not there: the wake row fails naming [wake] model and the built-ins."""
    row = check.check_wake(cfg(tmp_path, '[wake]\nmodel = "models/mine.tflite"\n'))
    assert row.ok is False and row.detail.startswith("[wake] model = 'models/mine.tflite': ")
    assert "does not exist" in row.detail and "hey_jarvis" in row.fix


# --- tools under the service's sandbox ------------------------------------------------------

UNIT = REPO / "systemd" / "mira-agent.service"
NOBODY = Account("nobody", 65534, frozenset({65534}))


class AsNobody(Sandbox):
    """The shipped unit's sandbox with its user played by `nobody` (no mira-agent user here)."""

    def account(self):
        return NOBODY


@pytest.fixture
def open_dir():
    """A folder of the test's that other users may enter (mode 0755), for access checks as another user."""
    d = Path(tempfile.mkdtemp(prefix="mira-check-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def shipped(**changes) -> Sandbox:
    return dataclasses.replace(AsNobody(**vars(Sandbox.from_unit(UNIT))), **changes)


def tool_cfg(tmp_path: Path, action: str) -> config.Config:
    return cfg(tmp_path, f'[[tools]]\nname = "t"\ndescription = "d"\nparameters = {{ type = "object" }}\n'
                         f'action = {action}\n')


def test_shipped_unit_is_read_as_systemd_merges_it():
    """User, groups, ProtectHome, PrivateTmp and the credentials come from the shipped unit."""
    s = Sandbox.from_unit(UNIT)
    assert (s.user, s.groups, s.protect_home, s.private_tmp) == (
        "mira-agent", ("audio", "gpio", "spi"), "yes", True)
    assert s.credentials == {"mira-api-key": "/etc/mira-agent/mira-api-key",
                             "porcupine-access-key": "/etc/mira-agent/porcupine-access-key"}


def test_a_drop_in_adds_a_credential(tmp_path):
    """A drop-in's LoadCredential= joins the unit's (what `systemctl edit` writes)."""
    unit = tmp_path / "mira-agent.service"
    unit.write_text(UNIT.read_text())
    (tmp_path / "mira-agent.service.d").mkdir()
    (tmp_path / "mira-agent.service.d" / "override.conf").write_text(
        "[Service]\nLoadCredential=ha-token:/etc/mira-agent/ha-token\n")
    assert Sandbox.from_unit(unit).credentials["ha-token"] == "/etc/mira-agent/ha-token"


def test_program_in_home_is_hidden_from_the_service(tmp_path):
    """argv[0] under /home fails under ProtectHome=yes, with where to put it instead."""
    found = tool_check.check_tool(tool_cfg(tmp_path, '{ kind = "command", argv = ["/home/pi/bin/radio"] }')
                             .settings.tools[0], cfg(tmp_path), shipped())
    assert found.ok is False
    assert found.detail == ("program: /home/pi/bin/radio is under /home, which the service cannot "
                            "see (ProtectHome=yes)")
    assert "/usr/local/bin" in found.fix


def test_bare_program_is_looked_up_in_the_services_path(tmp_path):
    """A bare name is found in systemd's PATH for services (true is in /usr/bin), as user nobody."""
    c = tool_cfg(tmp_path, '{ kind = "command", argv = ["true"], cwd = "/" }')
    found = tool_check.check_tool(c.settings.tools[0], c, shipped())
    assert found.ok is True and found.detail.startswith("runs /usr/bin/true as user mira-agent")


def test_program_the_service_user_may_not_run_fails_with_its_mode(tmp_path, open_dir):
    """A program owned by root with mode 0700 cannot be run by the service's user."""
    prog = open_dir / "radio"
    prog.write_text("#!/bin/sh\necho on\n")
    prog.chmod(0o700)
    c = tool_cfg(tmp_path, f'{{ kind = "command", argv = ["{prog}"], cwd = "/" }}')
    found = tool_check.check_tool(c.settings.tools[0], c, shipped(private_tmp=False))
    assert found.ok is False and f"user mira-agent may not run {prog}" in found.detail
    assert "mode 0700" in found.detail and "chmod 755" in found.fix
    prog.chmod(0o755)
    assert tool_check.check_tool(c.settings.tools[0], c, shipped(private_tmp=False)).ok is True


def token_tool(tmp_path: Path, token: Path) -> config.Config:
    """An HTTP tool sending `token` (written, mode 0600, when a folder holds it) as a Bearer header."""
    if token.parent.is_dir():
        token.write_text("secret-token\n")
        token.chmod(0o600)
    return tool_cfg(tmp_path, '{ kind = "http", url = "https://ha.example/api", headers = '
                              '{ Authorization = "Bearer {secret}" }, header_secret_files = '
                              f'{{ Authorization = "{token}" }} }}')


def test_token_in_tmp_is_not_the_services_and_the_fix_is_a_credential(tmp_path):
    """A token file under /tmp is invisible under PrivateTmp=yes: the fix is a LoadCredential= drop-in."""
    token = tmp_path / "ha-token"
    c = token_tool(tmp_path, token)
    found = tool_check.check_tool(c.settings.tools[0], c, shipped())
    assert found.ok is False and "PrivateTmp=yes" in found.detail
    assert f"LoadCredential=ha-token:{token}" in found.fix and "systemctl edit mira-agent" in found.fix
    with_credential = shipped(credentials={"ha-token": str(token)})
    assert tool_check.check_tool(c.settings.tools[0], c, with_credential) == tool_check.Finding(
        True, "token Authorization from the credential ha-token")


def test_token_readable_only_by_root_fails_for_the_service_user(tmp_path, open_dir):
    """A root-owned 0600 token outside /tmp: visible, but the service's user may not read it."""
    token = open_dir / "ha-token"
    c = token_tool(tmp_path, token)
    found = tool_check.check_tool(c.settings.tools[0], c, shipped(private_tmp=False))
    assert found.ok is False and f"user mira-agent may not read {token}" in found.detail
    os.chown(token, NOBODY.uid, -1)
    assert tool_check.check_tool(c.settings.tools[0], c, shipped(private_tmp=False)).ok is True


def test_missing_token_file_fails_without_a_sandbox(tmp_path):
    """No unit installed: the token is checked as this user reads it; a missing file fails with where
    to write it (what made `run` exit 78 while `check` said all good)."""
    c = token_tool(tmp_path, tmp_path / "no-such-folder" / "nope")
    rows = check.check_tools(c, None)
    assert [(r.name, r.ok) for r in rows] == [("tool t", False)]
    assert "cannot read Authorization token file" in rows[0].detail and "chmod 600" in rows[0].fix


def test_rows_that_could_not_be_looked_at_are_named_instead_of_all_good():
    """No failure but a row not checked (no key to open a session with): the last line names it."""
    text = format_rows([CheckRow("config", True, "ok"),
                        CheckRow("server", None, "not checked: no key", checked=False),
                        CheckRow("GPIO", None, "not used")])
    assert text.splitlines()[-1] == "no problem found; not checked: server."


def test_an_encoder_push_switch_set_to_talk_is_a_trigger(tmp_path, pin_factory):
    """[button] encoder_switch = "talk": pushing the encoder starts a conversation, so it counts."""
    pin_factory.setenv("GPIOZERO_PIN_FACTORY", "mock")
    row = _trigger(tmp_path, '[wake]\nengine = "none"\n[button]\nencoder_switch_pin = 5\n'
                             'encoder_switch = "talk"\n')
    assert row == CheckRow("trigger", True, "the button on BCM 5 starts a conversation")
