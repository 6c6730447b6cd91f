"""`mira-agent check`: one row per part the speaker needs, each failing row with its fix.

Every check is guarded: a part that cannot be checked gives a failing row, never a traceback.
Secrets are only ever reported as present or missing. The server row opens a real session with
the key (about a second of billed connection time); `--offline` checks everything else.
"""

from __future__ import annotations

import os
import queue
import stat
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from agent import config as config_mod
from agent.errors import EX_CONFIG, ConfigError, MiraAgentError
from agent.secrets import find_secret
from agent.service.logs import native_chatter_hidden, register_secret
from agent.service.sandbox import Sandbox
from agent.service.tool_check import check_tool, tools_to_check

SERVICE_KEY_FILE = Path("/etc/mira-agent/mira-api-key")  # where install.sh puts the credential
INSTALLED_EXAMPLE = Path("/etc/mira-agent/agent.toml.example")
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
    checked: bool = True
    """False when the part could not be looked at (the table then does not say 'all good')."""


def _guard(name: str, check, *args) -> list[CheckRow]:
    """The check's rows; an error it raises becomes one failing row (a bug: with how to report it)."""
    try:
        out = check(*args)
    except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
        return [CheckRow(name, False, f"could not be checked: {type(e).__name__}: {e}",
                         "this is a bug in mira-agent check: please report it with this line")]
    return out if isinstance(out, list) else [out]


# --- config and key -------------------------------------------------------------------------

def check_key(cfg: config_mod.Config) -> CheckRow:
    """The API key as the daemon would find it; as root, also the service's credential file."""
    try:
        key = cfg.api_key()
    except MiraAgentError as e:
        return CheckRow("API key", False, str(e), "store the key with sudo systemd/install.sh "
                        "--key-stdin < key.txt, or correct [server] api_key_file")
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
                        "run the check with sudo to see it", checked=False)
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
    try:
        picks = portaudio.chosen_devices(audio)
    except MiraAgentError as e:  # PyAudio missing: the message says what to install
        return [CheckRow("audio", False, str(e).partition(": ")[0],
                         "pip install 'mira-agent[alsa]', or set [audio] backend = \"file\"")]
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

def _porcupine(cfg: config_mod.Config, offline: bool) -> CheckRow:
    p = cfg.settings.wake.porcupine
    try:
        import pvporcupine
    except ImportError:
        return CheckRow("wake word", False, "porcupine: pvporcupine is not installed",
                        "pip install 'mira-agent[porcupine]', or use [wake] engine = \"openwakeword\"")
    try:
        key = find_secret(credential="porcupine-access-key", file=p.access_key_file,
                          env="PORCUPINE_ACCESS_KEY", what="Porcupine AccessKey",
                          key="wake.porcupine.access_key_file", base_dir=cfg.base_dir)
    except MiraAgentError as e:
        return CheckRow("wake word", False, str(e), "correct [wake.porcupine] access_key_file, or "
                        "put the key in /etc/mira-agent/porcupine-access-key (mode 0600)")
    if not key:
        return CheckRow("wake word", False, "porcupine: no AccessKey found",
                        "put it in /etc/mira-agent/porcupine-access-key (mode 0600) or set "
                        "[wake.porcupine] access_key_file")
    register_secret(key)
    if offline:
        return CheckRow("wake word", True, "porcupine: AccessKey present (not checked online: --offline)")
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


def check_wake(cfg: config_mod.Config, offline: bool = False) -> CheckRow:
    from agent.wake.factory import check_model_files

    wake = cfg.settings.wake
    if wake.engine == "none":
        return CheckRow("wake word", None, "off ([wake] engine = \"none\")")
    try:
        check_model_files(wake, cfg.base_dir)
    except ConfigError as e:
        return CheckRow("wake word", False, str(e).partition("; ")[0],
                        str(e).partition("; ")[2] or "correct [wake] model")
    if wake.engine == "porcupine":
        return _porcupine(cfg, offline)
    try:
        from agent.wake.openwakeword import OpenWakeWordDetector
    except ImportError as e:
        return CheckRow("wake word", False, f"openwakeword support is missing ({e})",
                        "pip install 'mira-agent[wake]'")
    from agent.wake.factory import wake_word_models
    t0 = time.perf_counter()
    try:
        with native_chatter_hidden():
            detector = OpenWakeWordDetector(wake_word_models(wake, cfg.base_dir),
                                            trigger_level=wake.trigger_level, refractory_s=wake.refractory_s)
    except MiraAgentError as e:
        return CheckRow("wake word", False, str(e), f"set [wake] model to one of "
                        f"{', '.join(BUILTIN_WAKE_MODELS)} or a .tflite file, or engine = \"none\"")
    with detector:
        return CheckRow("wake word", True, f"{detector.name} loaded "
                        f"({(time.perf_counter() - t0) * 1000:.0f} ms)")


def check_wake_verifier(cfg: config_mod.Config) -> CheckRow:
    """Whether the owner's voice verifier ([wake] verifier) is in use, and for which wake words."""
    from agent.wake.factory import describe_verifier

    wake = cfg.settings.wake
    if not wake.verifier or wake.engine != "openwakeword":
        return CheckRow("verifier", None, "none: any voice saying the wake word wakes it "
                        "(`mira-agent enroll` learns the owner's)")
    try:
        return CheckRow("verifier", True, describe_verifier(wake, cfg.base_dir))
    except MiraAgentError as e:
        return CheckRow("verifier", False, f"{e}; the wake word works without it",
                        f"run `mira-agent enroll --config {cfg.path}`, or set [wake] verifier = \"\"")


# --- GPIO -----------------------------------------------------------------------------------

def _pins(cfg: config_mod.Config) -> list[int]:
    from agent.tools.settings import GpioAction

    s = cfg.settings
    pins = list(s.button.pins().values())
    if s.leds.kind != "none":
        pins += list(s.leds.pins.values())
    pins += [t.action.pin for t in s.tools if isinstance(t.action, GpioAction)]
    return pins


def check_gpio(cfg: config_mod.Config) -> CheckRow:
    pins = _pins(cfg)
    if not pins:
        return CheckRow("GPIO", None, "not used (no button, mute switch, LEDs or GPIO tools configured)")
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


# --- what starts a conversation -----------------------------------------------------------

def check_trigger(cfg: config_mod.Config, wake: CheckRow, gpio: CheckRow) -> CheckRow:
    """What can start a conversation: the wake word (if it loaded) and the talk button (if usable)."""
    ways = []
    if wake.ok:
        ways.append("the wake word")
    b = cfg.settings.button
    pin = b.pin if b.pin is not None else b.encoder_switch_pin if b.encoder_switch == "talk" else None
    if pin is not None and gpio.ok:
        ways.append(f"the button on BCM {pin}")
    if ways:
        return CheckRow("trigger", True, " or ".join(ways) + " starts a conversation")
    why_wake = "the wake word is off" if cfg.settings.wake.engine == "none" else \
        "the wake word did not load"
    why_button = "no talk button is set" if pin is None else "the talk button's GPIO is not usable"
    return CheckRow("trigger", False, f"nothing can start a conversation: {why_wake} and {why_button}",
                    'set [wake] engine = "openwakeword" and model = "hey_jarvis" (or another built-in), '
                    "or wire a talk button and set [button] pin (hardware/leds-and-button.md)")


# --- tools ----------------------------------------------------------------------------------

def check_tools(cfg: config_mod.Config, sandbox: Sandbox | None) -> list[CheckRow]:
    """One row per command tool and per HTTP tool with a token, as the service reaches them."""
    rows = []
    for tool in tools_to_check(cfg):
        found = check_tool(tool, cfg, sandbox)
        rows.append(CheckRow(f"tool {tool.name}", found.ok, found.detail, found.fix))
    return rows


# --- board and LED chain ----------------------------------------------------------------------

def check_board(cfg: config_mod.Config) -> list[CheckRow]:
    """What [hardware] board chose (and what the config overrides); an apa102 chain's SPI device."""
    from agent.boards import chosen
    from agent.gpio.spi import ENABLE_SPI

    s = cfg.settings
    rows = []
    if s.hardware.board == "none":
        rows.append(CheckRow("board", None, "none: devices, pins and LEDs come from the config alone"))
    else:
        picks = chosen(s)
        kept = ", ".join(f"{k} = {v!r}" for k, v, board in picks if board)
        own = ", ".join(f"{k} = {v!r}" for k, v, board in picks if not board)
        rows.append(CheckRow("board", True, f"{s.hardware.board} chose {kept or 'nothing'}"
                             + (f"; the config sets {own}" if own else "")))
    if s.leds.kind == "apa102":
        path = Path(s.leds.spi_path)
        if not path.exists():
            rows.append(CheckRow("LEDs", False, f"apa102: {path} does not exist", ENABLE_SPI))
        elif not os.access(path, os.W_OK):
            rows.append(CheckRow("LEDs", False, f"apa102: {path} is not writable by this user",
                                 "run as a user in the spi group (the service's user is)"))
        else:
            rows.append(CheckRow("LEDs", True, f"apa102: {s.leds.count} LEDs on {path} at "
                                 f"{s.leds.spi_speed_hz / 1e6:g} MHz"))
    return rows


# --- server ---------------------------------------------------------------------------------

def service_key(cfg: config_mod.Config) -> str | None:
    """The key the daemon would use; run by hand as root, the installed credential's source file."""
    key = cfg.api_key()
    if not key:
        try:
            key = SERVICE_KEY_FILE.read_text(encoding="utf-8").strip() or None
        except OSError:
            key = None
    register_secret(key)
    return key


def check_session(cfg: config_mod.Config, key: str | None) -> CheckRow:
    """Open a real session as the daemon does (subprotocols, key, session.created), then close it."""
    from agent.offline.link import is_unreachable
    from agent.realtime.client import Closed, RealtimeConnection
    from agent.realtime.retry import Verdict, classify

    server = cfg.settings.server
    if not key:
        return CheckRow("server", None, "not checked: there is no API key to open a session with",
                        checked=False)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    conn = RealtimeConnection(server, key, answers.put)
    t0 = time.perf_counter()
    conn.open()
    try:  # the connect timeout bounds the handshake; session.created gets the same again
        first = answers.get(timeout=2 * server.connect_timeout_s + 1)
    except queue.Empty:
        first = None
    finally:
        conn.close()
    ms = (time.perf_counter() - t0) * 1000
    if first is None:
        return CheckRow("server", False, f"{conn.host} accepted the connection but sent no "
                        f"session.created within {server.connect_timeout_s:g} s",
                        "check that [server] url is the Mira Realtime endpoint")
    if isinstance(first, Closed):
        failure = first.failure
        detail, _, advice = str(failure).partition("; ")
        if classify(failure) is Verdict.AUTH:
            advice = (f"store the right key: sudo systemd/install.sh --key-stdin < key.txt (or write "
                      f"it to {SERVICE_KEY_FILE}, mode 0600), then sudo systemctl reload mira-agent")
        elif is_unreachable(failure):
            detail = f"offline: {detail}"
            advice = f"{advice or 'check [server] url and the network'}; {OFFLINE_MEANWHILE}"
        return CheckRow("server", False, detail, advice or "check [server] url and the network")
    if first.type != "session.created":
        what = getattr(first, "error", None) or getattr(first, "message", "") or first.type
        return CheckRow("server", False, f"{conn.host} answered the session with {what!s}",
                        "check [server] url and the key")
    return CheckRow("server", True, f"{conn.host}: a session opened and closed in {ms:.0f} ms "
                    "(a check costs about a second of connection time)")


OFFLINE_MEANWHILE = "meanwhile the speaker answers timers, the time and volume itself ([offline])"


def check_offline(cfg: config_mod.Config) -> CheckRow:
    """Whether the speaker can answer its offline commands when the service cannot be reached."""
    from agent.errors import ConfigError
    from agent.offline.listener import available
    from agent.offline.voice import Voice

    s = cfg.settings.offline
    if not s.enabled:
        return CheckRow("offline", None, "off ([offline] enabled = false): when the service "
                        "cannot be reached the speaker only says so")
    if not available():
        return CheckRow("offline", None, "off: pocketsphinx is not installed (pip install "
                        "'mira-agent[offline]'); when the service cannot be reached the speaker only says so")
    try:
        Voice(s.voice, s.speed_wpm, cfg.base_dir)
    except ConfigError as e:
        return CheckRow("offline", False, str(e).split("; ")[0], "; ".join(str(e).split("; ")[1:]))
    if s.voice.endswith(".onnx"):
        try:
            import piper  # noqa: F401
        except ImportError:
            return CheckRow("offline", False, f"the Piper voice {s.voice} needs piper-tts",
                            "pip install piper-tts, or set [offline] voice to an espeak-ng voice")
    return CheckRow("offline", True, "when the service cannot be reached, timers, the time, "
                    f"stop, volume and mute are answered on the device (voice {s.voice})")


# --- all of it ------------------------------------------------------------------------------

ROWS = ("API key", "microphone", "speaker", "wake word", "GPIO", "trigger", "server")


def _config_fix(e: MiraAgentError, path: Path) -> str:
    example = INSTALLED_EXAMPLE if INSTALLED_EXAMPLE.is_file() else config_mod.EXAMPLE_CONFIG
    keys = getattr(e, "keys", ())
    if keys:
        return f"in {path}, correct {', '.join(keys)} (every key is explained in {example})"
    if not path.exists():
        return f"copy the example and edit it: sudo cp {example} {path}"
    return f"correct {path} at the place named above (TOML: key = value, text in quotes; {example})"


def run_checks(config_path: str | Path, *, offline: bool = False,
               sandbox: Sandbox | None = None) -> list[CheckRow]:
    """Every check, in the order a person fixes things; later rows are skipped on a bad config.

    offline: everything but the server (no connection, no online key check). sandbox: the unit
    the tools are checked against (None: as this user sees them).
    """
    try:
        cfg = config_mod.load(config_path)
    except MiraAgentError as e:
        return [CheckRow("config", False, str(e), _config_fix(e, Path(config_path)))] + \
            [CheckRow(n, None, "not checked: the config must load first", checked=False) for n in ROWS]
    rows = [CheckRow("config", True, f"{cfg.path} is valid")]
    rows += _guard("API key", check_key, cfg)
    rows += _guard("audio", check_audio, cfg)
    wake = _guard("wake word", check_wake, cfg, offline)
    gpio = _guard("GPIO", check_gpio, cfg)
    rows += wake + _guard("verifier", check_wake_verifier, cfg) + gpio
    rows += _guard("trigger", check_trigger, cfg, wake[0], gpio[0])
    rows += _guard("board", check_board, cfg)
    rows += _guard("tools", check_tools, cfg, sandbox)
    rows += _guard("offline", check_offline, cfg)
    if offline:
        rows.append(CheckRow("server", None, "not checked (--offline)", checked=False))
    else:
        rows += _guard("server", check_session, cfg, service_key(cfg))
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
    unchecked = [r.name for r in rows if not r.checked]
    lines.append("")
    if failed:
        lines.append(f"{failed} problem{'s' if failed > 1 else ''} found.")
    elif unchecked:
        lines.append(f"no problem found; not checked: {', '.join(unchecked)}.")
    else:
        lines.append("all good.")
    return "\n".join(lines) + "\n"


def main(config_path: str | None, *, offline: bool = False, unit: str | None = None) -> int:
    """Print the table; 0 when nothing failed, 78 for a bad config, 1 for other failures."""
    path = config_path or "/etc/mira-agent/agent.toml"
    sandbox = Sandbox.from_unit(Path(unit)) if unit else Sandbox.installed()
    rows = run_checks(path, offline=offline, sandbox=sandbox)
    sys.stdout.write(f"mira-agent check ({path})\n\n" + format_rows(rows))
    if rows[0].ok is False:
        return EX_CONFIG
    return 1 if any(r.ok is False for r in rows) else 0
