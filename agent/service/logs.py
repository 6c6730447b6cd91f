"""Logging: journald with structured fields under systemd, plain lines on stderr otherwise.

Callers attach fields with `extra=fields(...)`:
    log.info("session open", extra=fields(state=State.LISTENING, session_id=sid, latency_ms=412))
In journald they become STATE=listening SESSION_ID=... LATENCY_MS=412 (`journalctl STATE=listening`);
on stderr they are appended compactly as [state=listening session_id=... latency_ms=412].
Every record passes a filter that blanks registered secrets, a last line of defence.

What people said and what the assistant answered is logged with extra={"SPEECH": True}, the words
as the record's %-arguments: `log.info("user: %s", text, extra={"SPEECH": True})`. With
`[logging] speech = false` each such argument is replaced by a count: "user: [5 words not logged]".
"""

import contextlib
import logging
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any, TextIO

from agent.errors import ConfigError, MiraAgentError
from agent.secrets import redact

JOURNAL_SOCKET = "/run/systemd/journal/socket"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
MIN_SECRET_LEN = 4  # shorter strings would blank ordinary words all over the log

_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
_OUR_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ ")
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
_speech_logged = True
_installed: list[logging.Handler] = []


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: keyword names become upper-case journal fields; None is left out.

    fields(state=State.LISTENING, session_id="sess_1", latency_ms=412)
    -> {"STATE": "listening", "SESSION_ID": "sess_1", "LATENCY_MS": 412}
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = name.upper()
        if not _FIELD_NAME.match(key):
            raise ValueError(f"log field {name!r} must be letters, digits and _ and start with a letter")
        if value is None:
            continue
        out[key] = value.value if isinstance(value, Enum) else value
    return out


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    # LogRecord's own attributes are lower case, so upper-case ones came from fields().
    return {k: v for k, v in record.__dict__.items() if _FIELD_NAME.match(k)}


def register_secret(secret: str | None) -> None:
    """Blank this string in every log record from now on (API keys, access keys, tokens)."""
    global _secrets
    if not secret or len(secret) < MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if secret not in _secrets:
            # Longest first, so a secret containing another is blanked whole.
            _secrets = tuple(sorted((*_secrets, secret), key=len, reverse=True))


def forget_secrets() -> None:
    """Drop every registered secret (after a reload replaced them, and in tests)."""
    global _secrets
    with _secrets_lock:
        _secrets = ()


class RedactSecrets(logging.Filter):
    """Replaces registered secrets with *** in the message, its arguments, fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's problem to report
            return True
        # The raw args would reach journald as CODE_ARGS, so a hit anywhere flattens msg and args.
        if any(s in message or s in repr(record.args) for s in secrets):
            record.msg, record.args = redact(message, *secrets), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if any(s in text for s in secrets):
                record.exc_text, record.exc_info = redact(text, *secrets), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, *secrets)
        for key, value in _record_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value, *secrets))
        return True


def set_speech_logged(logged: bool) -> None:
    """Whether records marked SPEECH keep their words ([logging] speech); applies at once."""
    global _speech_logged
    _speech_logged = bool(logged)


def _words_not_logged(value: Any) -> str:
    n = len(str(value).split())
    return f"[{n} word{'' if n == 1 else 's'} not logged]"


class HideSpeech(logging.Filter):
    """With speech logging off, a SPEECH record's words become a count; the line itself stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _speech_logged or not getattr(record, "SPEECH", False):
            return True
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_words_not_logged(a) if isinstance(a, str) else a for a in args)
        else:
            record.msg = _words_not_logged(record.msg)
        return True


class _Formatter(logging.Formatter):
    """No traceback for expected errors (MiraAgentError): their message is the whole story."""

    def __init__(self, fmt: str, *, with_fields: bool, **kwargs: Any):
        super().__init__(fmt, **kwargs)
        self._with_fields = with_fields

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, MiraAgentError):
            # Hide the traceback from this formatter only: other handlers share the record.
            saved = record.exc_info, record.exc_text
            record.exc_info = record.exc_text = None
            try:
                text = super().format(record)
            finally:
                record.exc_info, record.exc_text = saved
            detail = str(error)
            if detail and detail not in text:
                text = f"{text}: {detail}"
        else:
            text = super().format(record)
        if self._with_fields:
            extra = _record_fields(record)
            if extra:
                text += " [" + " ".join(f"{k.lower()}={v}" for k, v in extra.items()) + "]"
        return text


def parse_level(level: str | int) -> int:
    """A logging level from debug/info/warning/error (any case) or a logging constant."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    value = LEVELS.get(str(level).strip().lower())
    if value is None:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}; "
                          f"use e.g. --log-level info")
    return value


def journal_wanted(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when systemd connected this stream to the journal (JOURNAL_STREAM names its device:inode)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    # Checked, not assumed: a child that inherited the variable but logs elsewhere gets text.
    return (st.st_dev, st.st_ino) == (dev, ino)


def journal_reachable(path: str = JOURNAL_SOCKET) -> bool:
    """True when journald's socket is there and systemd-python is installed."""
    try:
        from systemd import journal  # noqa: F401
    except ImportError:
        return False
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _journal_handler(sender: Callable[..., Any] | None) -> logging.Handler:
    from systemd.journal import JournalHandler, send

    handler = JournalHandler(sender_function=sender or send, SYSLOG_IDENTIFIER="mira-agent")
    handler.setFormatter(_Formatter("%(message)s", with_fields=False))
    return handler


def setup_logging(level: str | int = "info", *, stream: TextIO | None = None,
                  journal: bool | None = None,
                  sender: Callable[..., Any] | None = None) -> logging.Handler:
    """Send the root logger to journald or stderr; calling again (e.g. on reload) replaces it.

    level: debug, info, warning or error. journal: None picks journald when systemd connected
    stderr to it and the journal is reachable, else plain text. sender: where journal entries go
    (systemd.journal.send by default). Returns the installed handler.
    """
    numeric = parse_level(level)
    stream = stream or sys.stderr
    if journal is None:
        journal = journal_wanted(stream) and journal_reachable()
    if journal:
        handler = _journal_handler(sender)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_Formatter(_TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", with_fields=True))
    handler.addFilter(HideSpeech())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed[:] = [handler]
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


class _HeldStderr:
    """fd 2 held in a file while any thread is inside native_chatter_hidden(); the last one out
    puts fd 2 back and passes on what is worth keeping. (Threads must share one hold: saving and
    restoring fd 2 each on its own, two overlapping holds would leave it on a deleted file.)"""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = -1
        self._file = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                sys.stderr.flush()
                self._file = tempfile.TemporaryFile()
                self._saved = os.dup(2)
                os.dup2(self._file.fileno(), 2)
            self._depth += 1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth:
                return
            sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            held, self._file = self._file, None
        with held:
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            lines = [x for x in lines if _OUR_LINE.match(x)]
        if lines:
            os.write(2, b"".join(lines))


_held_stderr = _HeldStderr()


@contextlib.contextmanager
def native_chatter_hidden() -> Iterator[None]:
    """Run a block whose native libraries print to fd 2 behind Python's back, and drop that.

    TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." at every model load,
    ALSA and JACK dozens of probe lines at every PortAudio scan: noise in the journal that no
    one can act on (real failures surface as exceptions, reported in a sentence). fd 2 is held
    in a file for the block; afterwards our own log lines, which other threads may have written
    meanwhile, are passed on and the rest dropped. At debug level everything is passed on.
    """
    _held_stderr.enter()
    try:
        yield
    finally:
        _held_stderr.leave()
