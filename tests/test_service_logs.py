"""Logging: journald selection and fields, plain stderr lines, and secret redaction."""

import io
import logging
import os
import re

import pytest

from agent.errors import AudioDeviceError, ConfigError
from agent.service import logs
from agent.service.logs import fields, register_secret, setup_logging
from agent.state import State

log = logging.getLogger("agent.test")


@pytest.fixture(autouse=True)
def _every_test_logs_cleanly(clean_logging):
    """Each test gets the root logger back as it found it, and no secrets (conftest)."""
    yield


class Journal:
    """Stands in for journald's socket: keeps what it would store (upper-case field names only)."""

    def __init__(self):
        self.entries: list[dict] = []

    def __call__(self, MESSAGE, **fields):  # noqa: N803 - systemd.journal.send's signature
        kept = {k: v for k, v in fields.items() if re.fullmatch(r"[A-Z][A-Z0-9_]*", k)}
        self.entries.append({"MESSAGE": MESSAGE, **kept})


def stream_of(file) -> str:
    st = os.fstat(file.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_journal_is_chosen_only_when_journal_stream_names_our_stderr(tmp_path):
    """JOURNAL_STREAM matching the stream's device:inode selects journald; another file does not."""
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        assert logs.journal_wanted(a, {"JOURNAL_STREAM": stream_of(a)})
        assert not logs.journal_wanted(a, {"JOURNAL_STREAM": stream_of(b)})
        assert not logs.journal_wanted(a, {})
        assert not logs.journal_wanted(a, {"JOURNAL_STREAM": "garbage"})


def test_unreachable_journal_falls_back_to_text(tmp_path, monkeypatch):
    """JOURNAL_STREAM set but no journald socket: plain text, no logging errors."""
    with open(tmp_path / "err", "w+") as err:
        monkeypatch.setenv("JOURNAL_STREAM", stream_of(err))
        monkeypatch.setattr(logs, "JOURNAL_SOCKET", str(tmp_path / "no-journal"))
        monkeypatch.setattr(logs.journal_reachable, "__defaults__", (str(tmp_path / "no-journal"),))
        handler = setup_logging("info", stream=err)
        assert isinstance(handler, logging.StreamHandler)
        log.info("hello")
        err.seek(0)
        assert err.read().rstrip().endswith("INFO agent.test: hello")


def test_reachable_journal_is_selected_with_journal_stream(tmp_path, monkeypatch):
    """With JOURNAL_STREAM on stderr and journald's socket present, the JournalHandler is installed."""
    import socket

    from systemd.journal import JournalHandler

    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s, open(tmp_path / "err", "w") as err:
        s.bind(str(path))
        monkeypatch.setenv("JOURNAL_STREAM", stream_of(err))
        monkeypatch.setattr(logs.journal_reachable, "__defaults__", (str(path),))
        assert isinstance(setup_logging("info", stream=err, sender=Journal()), JournalHandler)


def test_journal_entries_carry_structured_fields_and_priority():
    """fields() become SESSION_ID, STATE, LATENCY_MS; the level becomes PRIORITY."""
    journal = Journal()
    setup_logging("debug", journal=True, sender=journal)
    log.warning("reply started", extra=fields(state=State.SPEAKING, session_id="sess_1",
                                              latency_ms=412, error=None))
    (entry,) = journal.entries
    assert entry["MESSAGE"] == "reply started"
    assert (entry["STATE"], entry["SESSION_ID"], entry["LATENCY_MS"]) == ("speaking", "sess_1", 412)
    assert "ERROR" not in entry
    assert entry["PRIORITY"] == "4" and entry["LOGGER"] == "agent.test"
    assert entry["SYSLOG_IDENTIFIER"] == "mira-agent"


def test_stderr_lines_have_time_level_logger_and_compact_fields():
    """On stderr: 'date time.ms LEVEL logger: message [state=... latency_ms=...]'."""
    out = io.StringIO()
    setup_logging("info", stream=out, journal=False)
    log.info("listening", extra=fields(state=State.LISTENING, latency_ms=12))
    log.debug("not shown at info")
    line = out.getvalue().strip()
    date, clock, rest = line.split(" ", 2)
    assert len(date) == 10 and len(clock) == 12 and clock[8] == "."
    assert rest == "INFO agent.test: listening [state=listening latency_ms=12]"


def test_expected_errors_print_no_traceback_but_bugs_do():
    """A MiraAgentError logged with exc_info shows its sentence only; other exceptions keep the traceback."""
    out = io.StringIO()
    setup_logging("info", stream=out, journal=False)
    try:
        raise AudioDeviceError("microphone 'ReSpeaker' not found; run mira-agent devices")
    except AudioDeviceError:
        log.error("cannot start audio", exc_info=True)
    assert "Traceback" not in out.getvalue()
    assert "cannot start audio: microphone 'ReSpeaker' not found" in out.getvalue()
    try:
        {}["missing"]
    except KeyError:
        log.exception("bug")
    assert "Traceback" in out.getvalue() and "KeyError" in out.getvalue()


def test_registered_secret_is_blanked_in_message_args_fields_and_traceback():
    """A registered key never reaches stderr, whether in the message, its args, a field or a traceback."""
    key = "sk-mira-0123456789abcdef"
    register_secret(key)
    out = io.StringIO()
    setup_logging("debug", stream=out, journal=False)
    log.info("key is " + key)
    log.info("header %s", f"Bearer {key}")
    log.info("event", extra=fields(detail=f"url?key={key}"))
    try:
        raise RuntimeError(f"server said bad key {key}")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert key not in text
    assert text.count("***") == 4  # the message, the argument, the field, the exception line


def test_redaction_also_guards_the_journal_code_args():
    """journald gets neither the secret in MESSAGE nor the raw args (CODE_ARGS)."""
    key = "pv-access-key-XYZ123456"
    register_secret(key)
    journal = Journal()
    setup_logging("info", journal=True, sender=journal)
    log.info("porcupine key %s rejected", key)
    (entry,) = journal.entries
    assert key not in repr(entry)
    assert entry["MESSAGE"] == "porcupine key *** rejected"


def test_short_or_empty_secrets_are_not_registered():
    """Empty, None and tiny strings would blank ordinary words: they are ignored."""
    for s in ("", None, "abc"):
        register_secret(s)
    out = io.StringIO()
    setup_logging("info", stream=out, journal=False)
    log.info("abc stays")
    assert "abc stays" in out.getvalue()


def test_calling_setup_again_replaces_the_handler_and_level():
    """A reload calls setup_logging again: one handler, the new level."""
    first, second = io.StringIO(), io.StringIO()
    setup_logging("error", stream=first, journal=False)
    setup_logging("debug", stream=second, journal=False)
    log.debug("only once")
    assert first.getvalue() == "" and second.getvalue().count("only once") == 1
    assert logging.getLogger().level == logging.DEBUG


def test_a_bad_level_is_a_config_error_naming_it():
    """--log-level loud is refused with the allowed values."""
    with pytest.raises(ConfigError, match="'loud' is not one of debug, info, warning, error"):
        setup_logging("loud")


def test_field_names_are_checked():
    """A field name that journald would drop is refused at the call site."""
    with pytest.raises(ValueError, match="must be letters"):
        fields(**{"bad-name": 1})


# --- [logging] speech: the words people said kept out of the log ----------------------------

def test_hidden_speech_keeps_the_line_and_counts_the_words_on_stderr():
    """With speech logging off, a SPEECH record's words become '[N words not logged]'; other
    records, and the line around the words, are untouched."""
    out = io.StringIO()
    setup_logging("info", stream=out, journal=False)
    logs.set_speech_logged(False)
    try:
        log.info("user: %s", "turn on the kitchen light", extra={"SPEECH": True})
        log.info("assistant: %s", "Done, the light is on.", extra={"SPEECH": True})
        log.info("state %s -> %s", "idle", "listening")
    finally:
        logs.set_speech_logged(True)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("agent.test: user: [5 words not logged] [speech=True]"), lines[0]
    assert "assistant: [5 words not logged]" in lines[1] and "light" not in out.getvalue()
    assert lines[2].endswith("state idle -> listening")


def test_hidden_speech_reaches_the_journal_without_its_words_even_in_code_args():
    """Under journald neither MESSAGE nor the raw arguments carry the words; SPEECH=True stays
    as a field so the lines can be found (journalctl SPEECH=True)."""
    journal = Journal()
    setup_logging("info", journal=True, sender=journal)
    logs.set_speech_logged(False)
    try:
        log.info("user: %s", "my door code is four four two", extra={"SPEECH": True})
    finally:
        logs.set_speech_logged(True)
    (entry,) = journal.entries
    assert entry["MESSAGE"] == "user: [7 words not logged]"
    assert "door" not in repr(entry) and entry.get("SPEECH") in (True, "True")


def test_speech_is_logged_by_default_and_the_switch_applies_at_once():
    """The default keeps the words (a maker debugging wants them); set_speech_logged(False) hides
    the very next record, as a reload of [logging] does."""
    out = io.StringIO()
    setup_logging("info", stream=out, journal=False)
    log.info("user: %s", "hello there", extra={"SPEECH": True})
    logs.set_speech_logged(False)
    try:
        log.info("user: %s", "hello again", extra={"SPEECH": True})
    finally:
        logs.set_speech_logged(True)
    first, second = out.getvalue().splitlines()
    assert "user: hello there" in first and "user: [2 words not logged]" in second


def test_logging_section_is_in_the_config_and_documented():
    """[logging] speech is a setting (default true) and the example config documents it."""
    from agent import config
    assert config.parse({}).settings.logging.speech is True
    assert config.parse({"logging": {"speech": False}}).settings.logging.speech is False
    text = config.EXAMPLE_CONFIG.read_text()
    assert "[logging]" in text and "speech = true" in text
