"""A fault-injecting TCP proxy on 127.0.0.1: forward, black-hole (no FIN), cut (RST), delay, refuse.

The client talks to the proxy's port; the proxy talks to the real server. Faults are switched at
run time from any thread. One selector thread does all the work; every loop is bounded by the
proxy's life, and close() ends it.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed host or a broken NAT does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@dataclass
class _Pipe:
    """One proxied connection: the client's socket and the server's, with data waiting to go."""

    client: socket.socket
    server: socket.socket
    out: dict = field(default_factory=dict)   # socket -> deque[(due, bytes)]
    frozen: bool = False                      # black-holed: nothing read, nothing written

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.server if sock is self.client else self.client


class FaultProxy:
    """with FaultProxy(server_port) as proxy: connect to proxy.port; proxy.blackhole(), proxy.cut()..."""

    def __init__(self, upstream_port: int, port: int = 0, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.delay_s = 0.0
        """Latency added to every chunk, each way."""
        self.drop_on_accept = False
        """Accept each new connection and reset it at once (a server that dies at once)."""
        self.blackhole_new = False
        """New connections are accepted and then black-holed (never reach the server)."""
        self.accepted = 0
        """Connections accepted so far."""
        self.accept_times: list[float] = []
        self._pipes: list[_Pipe] = []
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._commands: deque = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.listen()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        for pipe in list(self._pipes):
            self._drop(pipe, rst=False)
        if self._listener is not None:
            self._listener.close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    # -- faults, from any thread -------------------------------------------------------------

    def listen(self) -> None:
        """(Re)open the listening port: new connections are accepted again."""
        self._run(self._listen)

    def refuse(self) -> None:
        """Stop listening: new connections are refused (RST on SYN), open ones go on."""
        self._run(self._unlisten)

    def blackhole(self) -> None:
        """Stop forwarding either way on every open connection; keep the sockets open, send no FIN."""
        self._run(lambda: [setattr(p, "frozen", True) for p in self._pipes])

    def cut(self) -> None:
        """Reset every open connection at both ends (RST, no close frame)."""
        self._run(lambda: [self._drop(p, rst=True) for p in list(self._pipes)])

    def _run(self, action) -> None:
        """Do `action` on the proxy thread (or here, before it runs) and wait for it."""
        if self._thread is None or not self._thread.is_alive():
            action()
            return
        done = threading.Event()
        self._commands.append((action, done))
        self._wake()
        assert done.wait(5), "the proxy thread did not answer"

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the loop ----------------------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is not None:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        self._listener = s
        self._sel.register(s, selectors.EVENT_READ, "listen")

    def _unlisten(self) -> None:
        if self._listener is None:
            return
        self._sel.unregister(self._listener)
        self._listener.close()
        self._listener = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            while self._commands:
                action, done = self._commands.popleft()
                action()
                done.set()
            self._update_interest()
            for key, _ in self._sel.select(timeout=0.01):
                if key.data == "wake":
                    self._wake_r.recv(4096)
                elif key.data == "listen":
                    self._accept()
                else:
                    self._pump(key.data, key.fileobj)

    def _update_interest(self) -> None:
        now = time.monotonic()
        for pipe in self._pipes:
            for sock in (pipe.client, pipe.server):
                events = 0
                if not pipe.frozen:
                    events |= selectors.EVENT_READ
                    queue = pipe.out.get(sock)
                    if queue and queue[0][0] <= now:
                        events |= selectors.EVENT_WRITE
                try:
                    if events:
                        self._sel.modify(sock, events, pipe)
                    else:
                        self._sel.unregister(sock)
                except KeyError:
                    if events:
                        self._sel.register(sock, events, pipe)
                except (ValueError, OSError):
                    pass

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        if self.drop_on_accept:
            _reset(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            _reset(client)
            return
        for s in (client, server):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, server, {client: deque(), server: deque()}, frozen=self.blackhole_new)
        self._pipes.append(pipe)

    def _pump(self, pipe: _Pipe, sock: socket.socket) -> None:
        if pipe not in self._pipes or pipe.frozen:
            return
        # Write what is due to this socket first, then read what it sent.
        queue = pipe.out[sock]
        now = time.monotonic()
        try:
            while queue and queue[0][0] <= now:
                due, data = queue[0]
                n = sock.send(data)
                if n < len(data):
                    queue[0] = (due, data[n:])
                    break
                queue.popleft()
        except BlockingIOError:
            pass
        except OSError:
            self._drop(pipe, rst=True)
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pipe, rst=True)
            return
        if not data:  # an orderly close (FIN): pass on what is queued, then the FIN
            peer = pipe.peer(sock)
            try:
                peer.settimeout(1)
                for _, chunk in pipe.out[peer]:
                    peer.sendall(chunk)
            except OSError:
                pass
            self._drop(pipe, rst=False)
            return
        pipe.out[pipe.peer(sock)].append((now + self.delay_s, data))

    def _drop(self, pipe: _Pipe, rst: bool) -> None:
        if pipe in self._pipes:
            self._pipes.remove(pipe)
        for s in (pipe.client, pipe.server):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if rst:
                _reset(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass


# -- instruments for fault tests on the harness's Run ------------------------------------------

def dithered(pcm, seed: int = 1):
    """pcm with +-2 LSB of seeded noise: every 20 ms frame unique, so its index can be found."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.clip(pcm.astype(np.int32) + rng.integers(-2, 3, len(pcm)), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class Mark:
    """A state change: the state, the microphone frames processed before it, and when."""

    state: object
    frames: int
    at: float
    reason: str


class Watch:
    """Counts the frames a Run's conversation has processed and marks each state change.

    Install before the Run starts (it wraps the conversation's frame handler and state callback).
    """

    def __init__(self, run):
        assert not run.thread.is_alive(), "install Watch before the Run starts"
        conv = run.conversation
        self.frames = 0
        self.marks: list[Mark] = []
        handle, shown = conv._on_frame, conv._on_state

        def counted(frame):
            self.frames += 1
            handle(frame)

        def marked(state, reason):
            self.marks.append(Mark(state, self.frames, time.monotonic(), reason))
            if shown is not None:
                shown(state, reason)

        conv._on_frame = counted
        conv._on_state = marked

    def first(self, state, after: float = 0.0) -> Mark:
        return next(m for m in self.marks if m.state is state and m.at >= after)

    def wait(self, state, after: float = 0.0, timeout: float = 20.0) -> Mark:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.marks if m.state is state and m.at >= after]
            if found:
                return found[0]
            time.sleep(0.005)
        raise AssertionError(f"never reached {state} after {after}; marks: {self.marks}")


def retune(run, **sections) -> None:
    """Change settings of a Run before it starts (e.g. server=..., which Run's keywords cannot take)."""
    from agent import config as config_mod

    data = run.config.settings.model_dump()
    for section, values in sections.items():
        data[section].update(values)
    run.config = run.conversation.config = config_mod.parse(data, run.config.path)


def input_frames(record, pcm) -> list[int]:
    """Indices of the microphone frames a devserver session received, in order (sample-exact)."""
    from harness import frames_in_order

    return frames_in_order(record.input_pcm(), pcm)


# -- a seeded generator of hostile server frames -----------------------------------------------

_KNOWN = ["session.created", "session.updated", "response.audio.delta", "response.audio.done",
          "response.audio_transcript.delta", "response.audio_transcript.done", "response.created",
          "response.done", "response.output_item.added", "response.output_item.done",
          "response.function_call_arguments.done", "conversation.item.input_audio_transcription.delta",
          "conversation.item.input_audio_transcription.completed", "input_audio_buffer.speech_started",
          "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "error", "rate_limits.updated"]
# Codes with a defined meaning (key refused, session over) are real protocol, not junk.
_MEANINGFUL_CODES = {"invalid_api_key", "authentication_error", "unauthorized", "forbidden",
                     "insufficient_quota", "account_deactivated", "invalid_session_config", "session_expired"}
OVERSIZE = 4 * 1024 * 1024 + 1
FUZZ_KINDS = ["junk json", "wrong types", "truncated", "bad base64", "odd audio", "oversize", "binary",
              "bad utf-8", "out of order", "unknown item", "error code"]


def _junk(rng, depth: int = 0):
    """A random JSON value: scalars, long strings, nested lists and objects."""
    import base64

    pick = rng.randrange(8 if depth < 3 else 5)
    if pick < 4:
        return [None, rng.random() < 0.5, rng.randint(-2**63, 2**63), rng.random() * 1e300][pick]
    if pick == 4:
        return rng.choice(["", "x" * rng.randrange(500), "\u202e\U0001f600\x00", "response.done"])
    if pick == 5:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(5))]
    if pick == 6:
        return {rng.choice(["type", "delta", "item", "item_id", "response", "error", "session", "k"]):
                _junk(rng, depth + 1) for _ in range(rng.randrange(5))}
    return base64.b64encode(rng.randbytes(rng.randrange(1, 300))).decode()


def _raw_text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame around any bytes (to send text that is not UTF-8)."""
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def hostile_server_frame(rng, kind: str | None = None) -> tuple[str, str | bytes]:
    """One hostile server frame: ("text", str), ("binary", bytes) or ("raw", bytes on the wire).

    Every kind of the issue: random JSON, wrong types, truncated frames, invalid base64, odd-length
    audio, frames above the client's size limit, binary frames, events out of order and deltas for
    unknown items; plus text that is not UTF-8 and error events with made-up codes.
    """
    import base64
    import json

    kind = kind or rng.choices(FUZZ_KINDS, weights=[10, 12, 10, 8, 8, 0.4, 6, 4, 14, 10, 6])[0]
    rid, iid = f"resp_{rng.randrange(10**6)}", f"item_{rng.randrange(10**6)}"
    if kind == "junk json":
        return "text", json.dumps(_junk(rng))
    if kind == "wrong types":
        event = {"type": rng.choice(_KNOWN)}
        for key in rng.sample(["delta", "item_id", "response_id", "response", "item", "error", "session",
                               "transcript", "call_id", "arguments", "name", "event_id"], rng.randrange(1, 5)):
            event[key] = _junk(rng)
        return "text", json.dumps(event)
    if kind == "truncated":
        event = {"type": rng.choice(_KNOWN), "event_id": "evt", "response_id": rid, "item_id": iid,
                 "delta": base64.b64encode(rng.randbytes(rng.randrange(2, 400))).decode()}
        text = json.dumps(event)
        return "text", text[: rng.randrange(1, len(text))]
    if kind == "bad base64":
        delta = rng.choice(["@@@@", "abc", "a===", "YWJj\n", "\u00e9\u00e9==", "=" * 8, "AAA*AAAA"])
        return "text", json.dumps({"type": "response.audio.delta", "event_id": "e", "response_id": rid,
                                   "item_id": iid, "output_index": 0, "content_index": 0, "delta": delta})
    if kind == "odd audio":
        audio = rng.randbytes(rng.choice([1, 3, 5, 479, 961, 4801]))
        return "text", json.dumps({"type": "response.audio.delta", "event_id": "e", "response_id": rid,
                                   "item_id": iid, "output_index": 0, "content_index": 0,
                                   "delta": base64.b64encode(audio).decode()})
    if kind == "oversize":
        return "text", json.dumps({"type": "response.audio.delta", "delta": "A" * OVERSIZE})
    if kind == "binary":
        return "binary", rng.randbytes(rng.randrange(1, 2000))
    if kind == "bad utf-8":
        return "raw", _raw_text_frame(b'{"type": "x\xff\xfe"}' + rng.randbytes(rng.randrange(0, 40)))
    if kind == "out of order":
        event = rng.choice([
            {"type": "response.done", "response": {"id": rid, "status": rng.choice(
                ["completed", "cancelled", "failed", "incomplete", 7]), "output": [], "usage": {}}},
            {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
            {"type": "response.audio.done", "response_id": rid, "item_id": iid},
            {"type": "input_audio_buffer.speech_started", "item_id": iid, "audio_start_ms": 5},
            {"type": "input_audio_buffer.speech_stopped", "item_id": iid, "audio_end_ms": 9},
            {"type": "session.created", "session": {"id": "sess_again"}},
            {"type": "response.function_call_arguments.done", "response_id": rid, "item_id": iid,
             "call_id": f"call_{rng.randrange(99)}", "name": rng.choice(["set_light", "nope", ""]),
             "arguments": rng.choice(["{}", "{", '{"on": "maybe"}', "[]"])},
            {"type": "response.output_item.added", "response_id": rid, "item": {"type": "function_call",
             "call_id": f"call_{rng.randrange(99)}", "name": _junk(rng)}},
            {"type": "conversation.item.input_audio_transcription.completed", "item_id": iid,
             "transcript": "x" * rng.randrange(3000)},
        ])
        return "text", json.dumps(dict(event, event_id=f"evt_{rng.randrange(10**6)}"))
    if kind == "unknown item":
        event = rng.choice([
            {"type": "response.audio.delta", "response_id": rid, "item_id": iid,
             "delta": base64.b64encode(bytes(rng.randrange(0, 4801, 2))).decode()},
            {"type": "response.audio_transcript.delta", "response_id": rid, "item_id": iid, "delta": "hm "},
            {"type": "response.audio_transcript.done", "response_id": rid, "item_id": iid, "transcript": "hm"},
            {"type": "conversation.item.input_audio_transcription.delta", "item_id": iid, "delta": "uh "},
        ])
        return "text", json.dumps(dict(event, event_id="e", output_index=0, content_index=0))
    code = "".join(rng.choice("abcdefghij_") for _ in range(rng.randrange(1, 24)))
    code = code if code not in _MEANINGFUL_CODES else "x" + code
    return "text", json.dumps({"type": "error", "event_id": "e", "error": {
        "type": "server_error", "code": code, "message": "fuzz " * rng.randrange(50), "param": None}})


def send_hostile(server, frame: tuple[str, str | bytes]) -> int:
    """Send one hostile frame on every open session of a DevServer."""
    how, data = frame
    if how == "raw":
        return server.write_raw(data)
    return server.send_raw(data)
