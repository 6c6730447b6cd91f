"""`mira-agent check`: one row per part the speaker needs, each failing row with its fix.

Every check is guarded: a part that cannot be checked gives a failing row, never a traceback.
Secrets are only ever reported as present or missing.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent import config as config_mod
from agent.errors import EX_CONFIG, MiraAgentError
from agent.secrets import find_secret
from agent.service.logs import register_secret

SERVICE_KEY_FILE = Path("/etc/mira-agent/mira-api-key")  # where install.sh puts the credential
# The fallback rates the audio layer tries after the configured one.
RATES = {"input": (48000, 44100, 16000), "output": (48000, 44100, 24000, 16000)}
BUILTIN_WAKE_MODELS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu")


@dataclass(frozen=True)
class CheckRow:
    """One line of the check table."""

    name: str
    """The part checked: config, API key, microphone, speaker, wake word, GPIO, server."""
    ok: bool | None
    """True: fine; False: needs fixing; None: not used or not checked."""
    detail: str
    """What was found, one sentence."""
    fix: str = ""
    """For a failing row: what to do about it."""


def _guard(name: str, check, *args) -> list[CheckRow]:
    try:
        out = check(*args)
    except MiraAgentError as e:
        return [CheckRow(name, False, str(e), "see the message above")]
    except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
        return [CheckRow(name, False, f"could not be checked: {type(e).__name__}: {e}",
                         "run with --log-level debug and report it")]
    return out if isinstance(out, list) else [out]


# --- config and key -------------------------------------------------------------------------

def check_key(cfg: config_mod.Config) -> CheckRow:
    """The API key as the daemon would find it; as root, also the service's credential file."""
    try:
        key = cfg.api_key()
    except MiraAgentError as e:
        return CheckRow("API key", False, str(e), "fix the key file named above")
    if key:
        register_secret(key)
        cred = os.environ.get("CREDENTIALS_DIRECTORY")
        if cred and (Path(cred) / "mira-api-key").is_file() and \
                (Path(cred) / "mira-api-key").read_text(encoding="utf-8").strip():
            where = "the systemd credential mira-api-key"
        elif cfg.settings.server.api_key_file:
            where = f"the file {cfg.resolve(cfg.settings.server.api_key_file)}"
        else:
            where = "the MIRA_API_KEY environment variable"
        return CheckRow("API key", True, f"present (from {where})")
    # Run by hand, the credential systemd would pass is not visible: look at its source file.
    try:
        st = SERVICE_KEY_FILE.stat()
    except PermissionError:
        return CheckRow("API key", None, f"{SERVICE_KEY_FILE} is not readable by this user; "
                        "run the check with sudo to see it")
    except OSError:
        return CheckRow("API key", False, "no API key found (no credential, no [server] api_key_file, "
                        "no MIRA_API_KEY)",
                        f"store it with: sudo systemd/install.sh --key-stdin < key.txt "
                        f"(or write it to {SERVICE_KEY_FILE}, mode 0600)")
    if stat.S_IMODE(st.st_mode) & 0o077:
        return CheckRow("API key", False, f"{SERVICE_KEY_FILE} is readable by other users",
                        f"sudo chmod 600 {SERVICE_KEY_FILE}")
    if st.st_size == 0:
        return CheckRow("API key", False, f"{SERVICE_KEY_FILE} is empty",
                        f"write the key into {SERVICE_KEY_FILE}")
    return CheckRow("API key", True, f"present in {SERVICE_KEY_FILE} (the service gets it as a credential)")


# --- audio ----------------------------------------------------------------------------------

def check_audio(cfg: config_mod.Config) -> list[CheckRow]:
    audio = cfg.settings.audio
    if audio.backend == "file":
        rows = []
        src = cfg.resolve(audio.input_file) if audio.input_file else None
        rows.append(CheckRow("microphone", True, f"file backend reads {src}") if src and src.is_file()
                    else CheckRow("microphone", False, f"file backend: input_file {src or '(empty)'} "
                                  "does not exist", "set [audio] input_file to a WAV file"))
        out = cfg.resolve(audio.output_file) if audio.output_file else None
        rows.append(CheckRow("speaker", True, f"file backend writes {out}") if out and out.parent.is_dir()
                    else CheckRow("speaker", False, f"file backend: output_file {out or '(empty)'} "
                                  "has no folder to go in", "set [audio] output_file to a writable path"))
        return rows
    try:
        from agent.audio import portaudio
    except ImportError:
        return [CheckRow("audio", None, "this build cannot list sound devices")]
    picks = portaudio.chosen_devices(audio)
    rows = []
    for kind, name in (("input", "microphone"), ("output", "speaker")):
        pick = picks[kind]
        if isinstance(pick, Exception):
            rows.append(CheckRow(name, False, str(pick),
                                 f"run `mira-agent devices` and set [audio] {kind}_device to one of the names"))
            continue
        channels = getattr(audio, f"{kind}_channels", 1)
        if channels > pick.channels(kind):
            rows.append(CheckRow(name, False, f"{pick.name} has {pick.channels(kind)} {kind} channel(s), "
                                 f"[audio] {kind}_channels is {channels}",
                                 f"set [audio] {kind}_channels to {pick.channels(kind)} or less"))
            continue
        wanted = [getattr(audio, f"{kind}_rate"), *RATES[kind]]
        rates = [r for r in dict.fromkeys(wanted) if portaudio.HOST.supports(kind, pick.index, r, channels)]
        if not rates:
            rows.append(CheckRow(name, False, f"{pick.name} accepts none of "
                                 f"{', '.join(map(str, dict.fromkeys(wanted)))} Hz at {channels} ch",
                                 "if mira-agent is running it holds the card: sudo systemctl stop "
                                 "mira-agent and check again; else use a plug: device (hardware/alsa.md)"))
            continue
        rows.append(CheckRow(name, True, f"{pick.name}: {channels} ch at "
                             f"{', '.join(map(str, rates))} Hz"))
    return rows


# --- wake word ------------------------------------------------------------------------------

def _porcupine(cfg: config_mod.Config) -> CheckRow:
    p = cfg.settings.wake.porcupine
    try:
        import pvporcupine
    except ImportError:
        return CheckRow("wake word", False, "porcupine: pvporcupine is not installed",
                        "pip install 'mira-agent[porcupine]', or use [wake] engine = \"openwakeword\"")
    key = find_secret(credential="porcupine-access-key", file=p.access_key_file,
                      env="PORCUPINE_ACCESS_KEY", what="Porcupine AccessKey",
                      key="wake.porcupine.access_key_file", base_dir=cfg.base_dir)
    if not key:
        return CheckRow("wake word", False, "porcupine: no AccessKey found",
                        "put it in /etc/mira-agent/porcupine-access-key (mode 0600) or set "
                        "[wake.porcupine] access_key_file")
    register_secret(key)
    t0 = time.perf_counter()
    try:  # checks the key online, as the daemon's start would
        engine = pvporcupine.create(access_key=key, keywords=p.keywords)
    except Exception as e:  # noqa: BLE001 - pvporcupine raises its own hierarchy
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return CheckRow("wake word", False, f"porcupine did not start: {first}",
                        "check the AccessKey in the Picovoice console, the keywords and the network")
    engine.delete()
    return CheckRow("wake word", True, f"porcupine {', '.join(p.keywords)} loaded "
                    f"({(time.perf_counter() - t0) * 1000:.0f} ms)")


def check_wake(cfg: config_mod.Config) -> CheckRow:
    wake = cfg.settings.wake
    if wake.engine == "none":
        return CheckRow("wake word", None, "engine none: the button starts conversations")
    if wake.engine == "porcupine":
        return _porcupine(cfg)
    try:
        from agent.wake.openwakeword import OpenWakeWordDetector
    except ImportError as e:
        return CheckRow("wake word", False, f"openwakeword support is missing ({e})",
                        "pip install 'mira-agent[wake]'")
    model = wake.model if wake.model in BUILTIN_WAKE_MODELS else cfg.resolve(wake.model)
    t0 = time.perf_counter()
    try:
        detector = OpenWakeWordDetector(model, threshold=wake.threshold,
                                        trigger_level=wake.trigger_level, refractory_s=wake.refractory_s)
    except MiraAgentError as e:
        return CheckRow("wake word", False, str(e), f"set [wake] model to one of "
                        f"{', '.join(BUILTIN_WAKE_MODELS)} or a .tflite file, or engine = \"none\"")
    with detector:
        return CheckRow("wake word", True, f"{detector.name} loaded "
                        f"({(time.perf_counter() - t0) * 1000:.0f} ms)")


# --- GPIO -----------------------------------------------------------------------------------

def _pins(cfg: config_mod.Config) -> list[int]:
    s = cfg.settings
    pins = [p for p in (s.button.pin, s.button.mute_pin) if p is not None]
    if s.leds.kind != "none":
        pins += list(s.leds.pins.values())
    return pins


def check_gpio(cfg: config_mod.Config) -> CheckRow:
    pins = _pins(cfg)
    if not pins:
        return CheckRow("GPIO", None, "not used (no button, mute switch or LEDs configured)")
    bad = [p for p in pins if not 0 <= p <= 27]
    if bad:
        return CheckRow("GPIO", False, f"BCM pin(s) {bad} do not exist on the 40-pin header",
                        "use BCM numbers 0-27 (hardware/leds-and-button.md)")
    try:
        from gpiozero import Device
    except ImportError:
        return CheckRow("GPIO", False, "gpiozero is not installed", "pip install 'mira-agent[gpio]'")
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always")
        try:
            Device.ensure_pin_factory()
        except Exception as e:  # noqa: BLE001 - BadPinFactory, ImportError, OSError from drivers
            tried = "; ".join(str(w.message) for w in fallbacks) or str(e)
            return CheckRow("GPIO", False, f"no pin factory could start ({tried})",
                            "on a Pi: pip install 'mira-agent[gpio]' (lgpio) and run as a user in "
                            "the gpio group; elsewhere: GPIOZERO_PIN_FACTORY=mock")
    factory = type(Device.pin_factory).__name__
    return CheckRow("GPIO", True, f"{factory}, BCM pins {', '.join(map(str, sorted(set(pins))))}")


# --- server ---------------------------------------------------------------------------------

def check_server(cfg: config_mod.Config, timeout_s: float = 3.0,
                 tls: ssl.SSLContext | None = None) -> CheckRow:
    """TCP connect and, for wss://, a TLS handshake with the server; nothing is sent."""
    url = cfg.settings.server.url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("ws", "wss") or not host:
        return CheckRow("server", False, f"[server] url {url!r} is not a ws:// or wss:// URL",
                        "set it to wss://api.vmira.ai/v1/realtime")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    where = f"{host}:{port}"
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            version = ""
            if parts.scheme == "wss":
                context = tls or ssl.create_default_context()
                with context.wrap_socket(sock, server_hostname=host) as tsock:
                    version = f", TLS OK ({tsock.version()})"
    except socket.gaierror as e:
        return CheckRow("server", False, f"cannot resolve {host} ({e.strerror})",
                        "check the network connection and DNS, and the host in [server] url")
    except ssl.SSLCertVerificationError as e:
        return CheckRow("server", False, f"{host}'s TLS certificate was not accepted ({e.verify_message})",
                        "check the clock (timedatectl: a wrong date breaks certificates) and that "
                        "no proxy intercepts TLS")
    except ssl.SSLError as e:
        return CheckRow("server", False, f"TLS handshake with {where} failed ({e.reason or e})",
                        "check that [server] url points at a wss:// endpoint")
    except TimeoutError:
        return CheckRow("server", False, f"no answer from {where} within {timeout_s:g} s",
                        "check the network connection and any firewall")
    except ConnectionRefusedError:
        return CheckRow("server", False, f"{where} refused the connection",
                        "check the host and port in [server] url, and that the server runs")
    except OSError as e:
        return CheckRow("server", False, f"cannot connect to {where} ({e.strerror or e})",
                        "check the network connection")
    ms = (time.perf_counter() - t0) * 1000
    return CheckRow("server", True, f"{where} reachable{version} ({ms:.0f} ms)")


# --- all of it ------------------------------------------------------------------------------

def run_checks(config_path: str | Path, *, timeout_s: float = 3.0,
               tls: ssl.SSLContext | None = None) -> list[CheckRow]:
    """Every check, in the order a person fixes things; later rows are skipped on a bad config."""
    try:
        cfg = config_mod.load(config_path)
    except MiraAgentError as e:
        rows = [CheckRow("config", False, str(e), f"fix {config_path} (the installed example is "
                         "/etc/mira-agent/agent.toml.example)")]
        return rows + [CheckRow(n, None, "not checked: the config must load first")
                       for n in ("API key", "audio", "wake word", "GPIO", "server")]
    rows = [CheckRow("config", True, f"{cfg.path} is valid")]
    rows += _guard("API key", check_key, cfg)
    rows += _guard("audio", check_audio, cfg)
    rows += _guard("wake word", check_wake, cfg)
    rows += _guard("GPIO", check_gpio, cfg)
    rows += _guard("server", check_server, cfg, timeout_s, tls)
    return rows


def format_rows(rows: list[CheckRow]) -> str:
    """The table a person reads: status, part, what was found, and the fix under a failing row."""
    width = max(len(r.name) for r in rows)
    lines = []
    for r in rows:
        mark = {True: "ok", False: "FAIL", None: "-"}[r.ok]
        lines.append(f"  {mark:<5} {r.name:<{width}}  {r.detail}")
        if r.ok is False and r.fix:
            lines.append(f"  {'':<5} {'':<{width}}  fix: {r.fix}")
    failed = sum(r.ok is False for r in rows)
    lines.append("")
    lines.append("all good." if not failed else f"{failed} problem{'s' if failed > 1 else ''} found.")
    return "\n".join(lines) + "\n"


def main(config_path: str | None) -> int:
    """Print the table; 0 when nothing failed, 78 for a bad config, 1 for other failures."""
    path = config_path or "/etc/mira-agent/agent.toml"
    rows = run_checks(path)
    sys.stdout.write(f"mira-agent check ({path})\n\n" + format_rows(rows))
    if rows[0].ok is False:
        return EX_CONFIG
    return 1 if any(r.ok is False for r in rows) else 0
