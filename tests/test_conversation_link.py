"""The session link alone: a fake connection, a fake clock, no socket and no sound card."""

import base64
import json

import numpy as np
import pytest

from agent import config as config_mod
from agent.audio.base import FRAME_SAMPLES
from agent.conversation.link import SessionLink, ToolOutcome
from agent.errors import ConnectionFailed
from agent.realtime.client import Closed
from agent.realtime.events import parse


class FakeConnection:
    """What the link sees of a RealtimeConnection: it records what is sent; the test speaks for
    the server through `link.on_net(conn, event)`."""

    def __init__(self, settings, key, on_event):
        self.host, self.sent, self.alive = "fake", [], True
        self.opened = self.closed = self.aborted = self.brisk = False
        self.last_heard = None
        self.confirmed = None

    def open(self):
        self.opened = True

    def send(self, event) -> bool:
        if not self.alive:
            return False
        self.sent.append(event)
        return True

    @property
    def sent_events(self) -> int:
        return len(self.sent)

    @property
    def confirmed_events(self) -> int:
        """What the server confirmed having read (a pong): all of it unless the test says."""
        return len(self.sent) if self.confirmed is None else self.confirmed

    def close(self, code=1000):
        self.closed = True

    def abort(self):
        self.aborted = True

    def set_liveness(self, brisk):
        self.brisk = brisk

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.sent]

    def appended(self) -> list[bytes]:
        return [base64.b64decode(e["audio"]) for e in self.sent if e["type"] == "input_audio_buffer.append"]


class Listener:
    """Records what the link tells the conversation."""

    def __init__(self):
        self.told = []

    def link_ready(self, resumed, redelivered):
        self.told.append(("ready", resumed, redelivered))

    def link_event(self, event):
        self.told.append(("event", event.type))

    def link_reconnecting(self, failure, delay):
        self.told.append(("reconnecting", str(failure)))

    def link_gave_up(self, failure, auth):
        self.told.append(("gave up", str(failure), auth))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _make_link(**sections):
    data = {"reconnect": {"base_s": 0.5, "buffer_s": 2.0}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    conns, listener, clock = [], Listener(), Clock()

    def connect(settings, key, on_event):
        conns.append(FakeConnection(settings, key, on_event))
        return conns[-1]

    link = SessionLink(config_mod.parse(data), "sk-test", listener, lambda *m: None, clock=clock,
                       connect=connect)
    return link, conns, listener, clock


def _server(link, conn, kind, **fields):
    """The server sends one event on `conn`."""
    link.on_net(conn, parse(json.dumps({"type": kind, **fields})))


def _frames(n, start=0):
    """Quiet frames (-70 dBFS and below), each holding its own number."""
    return [np.full(FRAME_SAMPLES, start + i, np.int16) for i in range(n)]


def _loud(n, start):
    """Frames as loud as speech (-20 dBFS), numbered from `start` in their first sample."""
    out = []
    for i in range(n):
        f = np.full(FRAME_SAMPLES, 3000, np.int16)
        f[0] = start + i
        out.append(f)
    return out


def _ids(appended: list[bytes]) -> list[int]:
    """Which test frame each pcm16 append carries (each frame holds its own number)."""
    return [int(np.frombuffer(a, "<i2")[0]) for a in appended]


def _reconnect(link, conns, clock):
    """Let the backoff pass; the link dials a new connection, which opens a session."""
    clock.now += 60
    link.tick(clock.now)
    _server(link, conns[-1], "session.created", session={})
    return conns[-1]


def test_a_session_is_configured_with_the_device_starting_each_reply():
    """session.created: session.update with server VAD that commits but does not answer by itself."""
    link, conns, listener, _ = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    update = conns[0].sent[0]
    assert update["type"] == "session.update"
    assert update["session"]["turn_detection"]["create_response"] is False
    assert listener.told == [("ready", False, None)]


def test_held_frames_go_first_and_every_append_is_one_frame():
    """Audio captured before the session was ready goes out first, in order, one frame per append."""
    link, conns, _, _ = _make_link()
    link.open(manual=False, held=_frames(5))
    for f in _frames(3, start=5):
        link.send_frame(f)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(2, start=8):
        link.send_frame(f)
    appended = conns[0].appended()
    assert _ids(appended) == list(range(10))
    assert {len(a) for a in appended} == {2 * FRAME_SAMPLES}


def test_a_drop_mid_utterance_resends_the_whole_utterance_then_what_was_held():
    """The server heard speech start but never committed it: the new session gets all of it again,
    then the frames captured during the drop, each exactly once."""
    link, conns, listener, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(4):
        link.send_frame(f)
    _server(link, conns[0], "input_audio_buffer.speech_started", audio_start_ms=0, item_id="i1")
    for f in _frames(4, start=4):
        link.send_frame(f)
    link.on_net(conns[0], Closed(ConnectionFailed("connection to fake was lost")))
    assert listener.told[-1] == ("reconnecting", "connection to fake was lost")
    for f in _frames(3, start=8):
        link.send_frame(f)
    second = _reconnect(link, conns, clock)
    assert _ids(second.appended()) == list(range(11))
    assert listener.told[-1] == ("ready", True, None)


def test_a_drop_between_utterances_sends_only_what_the_old_session_never_got():
    """Quiet audio the old session already had is not sent twice; what was captured meanwhile is."""
    link, conns, _, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(4):
        link.send_frame(f)
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    for f in _frames(2, start=4):
        link.send_frame(f)
    second = _reconnect(link, conns, clock)
    assert _ids(second.appended()) == [4, 5]


def test_speech_the_old_session_may_not_have_reported_goes_again_with_its_padding():
    """The socket died as the user began to speak (no speech_started came back): from the
    server's prefix padding before the first loud frame, the audio goes to the next session."""
    link, conns, _, clock = _make_link(session={"turn_detection": {"prefix_padding_ms": 60}})
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(10) + _loud(3, start=10):
        link.send_frame(f)
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    second = _reconnect(link, conns, clock)
    assert _ids(second.appended()) == [7, 8, 9, 10, 11, 12]


def test_frames_the_server_never_confirmed_go_again_after_a_reset():
    """A reset kills frames in flight: whatever was sent after the last pong's ping is sent again
    (the new session starts empty, so a frame that did arrive costs nothing twice)."""
    link, conns, _, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(6):
        link.send_frame(f)
    conns[0].confirmed = conns[0].sent_events - 2  # the last two appends were never confirmed
    link.on_net(conns[0], Closed(ConnectionFailed("connection to fake was lost")))
    second = _reconnect(link, conns, clock)
    assert _ids(second.appended()) == [4, 5]


def test_a_frame_whose_send_fails_is_kept_for_the_next_session():
    """A socket that dies under a send: that frame and the ones after it wait, none is lost."""
    link, conns, _, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    for f in _frames(3):
        link.send_frame(f)
    conns[0].alive = False
    for f in _frames(2, start=3):
        link.send_frame(f)
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    second = _reconnect(link, conns, clock)
    assert _ids(conns[0].appended()) + _ids(second.appended()) == list(range(5))


def test_a_reply_cut_by_the_drop_is_asked_for_again_with_the_history_replayed():
    """Asked, started, dropped before response.done: the new session replays the text and asks again."""
    link, conns, listener, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    link.history.add("user", "tell me a story")
    link.ask_reply()
    _server(link, conns[0], "response.created", response={"id": "r1"})
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    second = _reconnect(link, conns, clock)
    kinds = second.kinds()
    assert kinds[:2] == ["session.update", "conversation.item.create"]
    assert kinds[-1] == "response.create"
    assert listener.told[-1] == ("ready", True, "reply")


def test_tool_outputs_finished_during_a_drop_reach_the_next_session_after_their_calls():
    """A tool that finished while reconnecting: its call is replayed, then its output, then a reply."""
    link, conns, listener, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    link.ask_reply()
    _server(link, conns[0], "response.created", response={"id": "r1"})
    _server(link, conns[0], "response.done", response={"id": "r1", "status": "completed", "output": [
        {"type": "function_call", "call_id": "c1", "name": "timer", "arguments": "{}"}]})
    first_connection = link.connection
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    link.deliver([ToolOutcome("c1", "timer", '{"ok": true}', True, "{}", first_connection)])
    second = _reconnect(link, conns, clock)
    created = [e for e in second.sent if e["type"] == "conversation.item.create"]
    assert [c["item"]["type"] for c in created] == ["function_call", "function_call_output"]
    assert second.kinds()[-1] == "response.create"
    assert listener.told[-1] == ("ready", True, "outputs")


def test_a_tool_still_running_at_the_drop_is_not_asked_for_twice():
    """The reply with the call is done: reconnecting asks for nothing until the tool's output."""
    link, conns, listener, clock = _make_link()
    link.open(manual=False)
    _server(link, conns[0], "session.created", session={})
    link.ask_reply()
    _server(link, conns[0], "response.done", response={"id": "r1", "status": "completed", "output": [
        {"type": "function_call", "call_id": "c1", "name": "slow", "arguments": "{}"}]})
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    second = _reconnect(link, conns, clock)
    assert "response.create" not in second.kinds()
    assert listener.told[-1] == ("ready", True, None)


def test_a_refused_key_gives_up_without_retrying():
    """HTTP 401 at the handshake: the link gives up as an auth fault and dials nothing more."""
    link, conns, listener, clock = _make_link()
    link.open(manual=False)
    link.on_net(conns[0], Closed(ConnectionFailed("fake refused the API key (HTTP 401)", status=401)))
    assert listener.told == [("gave up", "fake refused the API key (HTTP 401)", True)]
    clock.now += 600
    link.tick(clock.now)
    assert len(conns) == 1


def test_a_turn_held_past_the_buffer_is_given_up_with_the_time_it_waited():
    """buffer_s of audio held with no session: the link gives up and says for how long."""
    link, conns, listener, _ = _make_link(reconnect={"buffer_s": 0.1})
    link.open(manual=False)
    for f in _frames(6):
        link.send_frame(f)
    gave_up = [t for t in listener.told if t[0] == "gave up"]
    assert gave_up and gave_up[0][2] is False
    assert "could not be reached for 0.1 s of held audio (reconnect.buffer_s = 0.1)" in gave_up[0][1]


def test_a_push_to_talk_turn_ends_with_its_last_partial_frame_a_commit_and_a_reply():
    """end_turn: the encoder's held audio padded to a whole frame, then commit, then response.create."""
    link, conns, _, _ = _make_link(session={"input_audio_format": "g711_ulaw"})
    link.open(manual=True)
    _server(link, conns[0], "session.created", session={})
    assert conns[0].sent[0]["session"]["turn_detection"] is None
    for f in _frames(7):
        link.send_frame(f)
    link.end_turn()
    kinds = conns[0].kinds()
    assert kinds[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert {len(a) for a in conns[0].appended()} == {160}
    assert sum(map(len, conns[0].appended())) >= 7 * 160


@pytest.mark.parametrize("brisk", [True, False])
def test_liveness_follows_the_turn_and_reaches_a_new_connection(brisk):
    """Brisk pings while a turn is in progress are asked of every connection the link opens."""
    link, conns, _, clock = _make_link()
    link.set_liveness(brisk)
    link.open(manual=False)
    assert conns[0].brisk is brisk
    link.on_net(conns[0], Closed(ConnectionFailed("lost")))
    _reconnect(link, conns, clock)
    assert conns[1].brisk is brisk


def test_the_summary_counts_only_time_a_session_was_open():
    """A conversation whose session never opened says so; an open one counts from ready to close."""
    link, conns, _, clock = _make_link()
    link.open(manual=False)
    clock.now += 10
    assert link.close("given up").startswith("never connected (1 attempt in 10.0 s)")
    link.open(manual=False)
    clock.now += 2
    _server(link, conns[-1], "session.created", session={})
    clock.now += 3
    assert link.close("done").startswith("connected 3.0 s")

