"""One realtime session: the protocol, turn by turn, over one WebSocket connection."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from agent.devserver import responses, tts
from agent.devserver.events import check_event, clean_item, decode_audio, default_session, merge_session
from agent.devserver.record import SessionRecord, Turn
from agent.devserver.responses import Plan, Run
from agent.devserver.vad import EnergyVad

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from agent.devserver.asr import Recognizer
    from agent.devserver.faults import Faults
    from agent.devserver.record import Recorder
    from agent.devserver.script import Script


class Host(Protocol):
    """What a session needs of its server (agent.devserver.server.DevServer, which imports this
    module: the dependency goes one way)."""

    ids: Any
    faults: Faults
    recorder: Recorder
    script: Script
    frame_ms: int | None
    reply_delay_ms: int

    async def acquire_recognizer(self) -> Recognizer: ...

    def release_recognizer(self, recognizer: Recognizer) -> None: ...

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100


class Session:
    """Reads client events in order and answers them; responses stream on their own task."""

    def __init__(self, ws: ServerConnection, server: Host, record: SessionRecord):
        self.ws = ws
        self.server = server
        self.ids = server.ids
        self.record = record
        self.config = default_session(record.session_id)
        self.items: list[dict[str, Any]] = []
        self.calls: dict[str, str] = {}                  # call_id -> function name
        self.pending_outputs: list[tuple[str, str]] = []  # (name, output) awaiting response.create
        self.response: Run | None = None
        self.silenced = False
        self._closing: asyncio.Task | None = None
        self._asr: asyncio.Task[Recognizer] | None = None
        self.seg_ms = 0            # ms of input audio before the current format's segment
        self.received = 0
        self._new_segment()

    # -- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        self._asr = asyncio.create_task(self.server.acquire_recognizer())
        expiry = None
        try:
            await self.emit("session.created", session=self.config)
            if not self.server.faults.answer_pings:
                self.silence()
            if self.server.faults.max_session_s:
                expiry = asyncio.create_task(self._expire_after(self.server.faults.max_session_s))
            async for frame in self.ws:
                self.record.client_frames.append(frame)
                await self.handle(frame)
        except (ConnectionClosed, responses.Dropped):
            pass
        finally:
            if expiry:
                expiry.cancel()
            if self.response and self.response.task:
                self.response.cancel("client_cancelled")
                await asyncio.gather(self.response.task, return_exceptions=True)
            self.record.close_code = self.ws.close_code
            self.record.closed = True
            try:
                recognizer = await self._asr
            except Exception:
                log.exception("devserver: the recognizer could not be created")
            else:
                recognizer.finish()
                self.server.release_recognizer(recognizer)
            self.server.recorder.changed()

    async def emit(self, kind: str, **fields: Any) -> None:
        """Send one server event (every one carries an event_id) and record it."""
        if self.silenced:
            return
        event = {"event_id": self.ids.new("event"), "type": kind, **fields}
        self.record.server_events.append(event)  # before sending: a test may look as soon as it arrives
        self.server.recorder.changed()
        try:
            await self.ws.send(json.dumps(event))
        except ConnectionClosed:
            self.record.server_events.remove(event)
            raise

    async def error(self, code: str, message: str, param: str | None = None,
                    event_id: str | None = None, kind: str = "invalid_request_error") -> None:
        await self.emit("error", error={"type": kind, "code": code, "message": message,
                                        "param": param, "event_id": event_id})

    def silence(self) -> None:
        """Black-hole the socket: read nothing (so no pongs), send nothing, no keepalive pings."""
        self.silenced = True
        if self.ws.keepalive_task is not None:
            self.ws.keepalive_task.cancel()
        self.ws.transport.pause_reading()

    async def fault(self, kind: str) -> None:
        log.info("devserver: fault %s on %s", kind, self.record.session_id)
        if kind == "abort":
            self.ws.transport.abort()
        elif kind in ("close_1001", "close_1011"):
            await self.close(int(kind[-4:]), "devserver fault")
        elif kind == "session_expired":
            await self.expire()
        elif kind == "silence":
            self.silence()

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame now; the closing handshake finishes on its own (no waiting on the client)."""
        self._closing = asyncio.create_task(self.ws.close(code, reason))
        for _ in range(200):
            if self.ws.state is not State.OPEN:
                return
            await asyncio.sleep(0.001)

    async def expire(self) -> None:
        await self.error("session_expired", "Your session hit the maximum duration of the dev server.")
        await self.close(1001, "session expired")

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        try:
            await self.expire()
        except ConnectionClosed:
            pass

    # -- dispatch ----------------------------------------------------------------------------

    async def handle(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.error("invalid_event", "Binary frames are not supported; send JSON text.")
            return
        try:
            event = json.loads(frame)
        except ValueError:
            await self.error("invalid_json", "The frame is not valid JSON.")
            return
        self.record.client_events.append(event)
        self.server.recorder.changed()
        problem = check_event(event)
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if problem:
            code, message, param = problem
            await self.error(code, message, param, event_id if isinstance(event_id, str) else None)
            return
        handler = getattr(self, "on_" + event["type"].replace(".", "_"))
        try:
            await handler(event, event_id)
        except (ConnectionClosed, responses.Dropped):
            raise
        except Exception:  # a devserver bug: say so, keep the session (tests assert no server_error)
            log.exception("devserver: handling %s failed", event["type"])
            await self.error("server_error", "The dev server failed on this event (see its log).",
                             None, event_id, kind="server_error")

    # -- session -------------------------------------------------------------------------------

    async def on_session_update(self, event: dict, event_id: str | None) -> None:
        old_format = self.config["input_audio_format"]
        config, problem = merge_session(self.config, event["session"])
        if problem:
            await self.error(*problem, event_id=event_id)
            return
        old_td = self.config["turn_detection"]
        self.config = config
        if config["input_audio_format"] != old_format:
            self._new_segment()
        elif config["turn_detection"] != old_td:
            self._new_vad()
        await self.emit("session.updated", session=self.config)

    # -- input audio -------------------------------------------------------------------------

    def _new_segment(self) -> None:
        """Audio from here on is in the current input format; positions keep counting in ms."""
        self.seg_ms += self.received * 1000 // self.rate if self.received else 0
        self.fmt = self.config["input_audio_format"]
        self.rate = tts.rate_of(self.fmt)
        self.bps = tts.bytes_per_sample(self.fmt)
        self.seg_byte = len(self.record.input_audio) // self.bps * self.bps
        self.received = 0          # whole samples received in this segment
        self.buf_start = 0         # first uncommitted sample
        self.turn_start: int | None = None
        self.turn_item: str | None = None
        self.asr_fed = 0
        self.partial = ""
        self.record.input_format = self.fmt
        self._new_vad()

    def _new_vad(self) -> None:
        td = self.config["turn_detection"]
        self.vad = None if td is None else EnergyVad(
            self.rate, td["threshold"], td["prefix_padding_ms"], td["silence_duration_ms"],
            start=self.received)
        if self.vad:
            self.vad.reset(self.buf_start)
        # A turn in progress under the old rules is dropped (its audio stays in the buffer).
        self.turn_start = self.turn_item = None

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate

    def _pcm(self, a: int, b: int) -> np.ndarray:
        data = bytes(self.record.input_audio[self.seg_byte + a * self.bps: self.seg_byte + b * self.bps])
        return tts.decode(data, self.fmt)

    async def on_input_audio_buffer_append(self, event: dict, event_id: str | None) -> None:
        data = decode_audio(event["audio"])
        if data is None:
            await self.error("invalid_value", "Invalid value for 'audio': not base64.", "audio", event_id)
            return
        self._check_size(len(data))
        run = self.response
        if run and run.audio_started and not run.done:
            # Mira's barge-in: audio arriving while reply audio streams cancels the response.
            await self.cancel_response("turn_detected")
        self.record.input_audio += data
        self.server.recorder.changed()
        before = self.received
        self.received = (len(self.record.input_audio) - self.seg_byte) // self.bps
        if self.received == before:
            return
        if self.vad is None:
            if self.turn_item is None:
                await self._begin_turn(self.buf_start)
            await self._feed_asr(self.received)
            return
        for vad_event in self.vad.feed(self._pcm(before, self.received)):
            if vad_event.kind == "started":
                await self._begin_turn(vad_event.sample)
                await self.emit("input_audio_buffer.speech_started",
                                audio_start_ms=self.seg_ms + self._ms(vad_event.sample),
                                item_id=self.turn_item)
            else:
                item_id = self.turn_item
                await self.emit("input_audio_buffer.speech_stopped",
                                audio_end_ms=self.seg_ms + self._ms(vad_event.sample), item_id=item_id)
                await self._commit(vad_event.sample, auto=True)
        if self.turn_item is not None:
            await self._feed_asr(self.received)

    def _check_size(self, size: int) -> None:
        """Every append is one frame of the server's frame_ms: a wrong size is recorded and logged."""
        self.record.append_sizes[size] += 1
        if self.server.frame_ms is None:
            return
        expected = self.rate * self.bps * self.server.frame_ms // 1000
        if size != expected:
            if not self.record.bad_appends:
                log.warning("devserver: an append of %d bytes is not one %d ms frame of %s (%d bytes)",
                            size, self.server.frame_ms, self.fmt, expected)
            self.record.bad_appends.append(size)

    async def _begin_turn(self, start: int) -> None:
        self.turn_start = start
        self.turn_item = self.ids.new("item")
        self.asr_fed = start
        self.partial = ""
        (await self._asr).begin(self.rate)

    async def _feed_asr(self, upto: int) -> None:
        if upto <= self.asr_fed:
            return
        hyp = (await self._asr).feed(self._pcm(self.asr_fed, upto))
        self.asr_fed = upto
        await self._partial(hyp)

    async def _partial(self, hyp: str) -> None:
        """A transcription delta when the hypothesis grew by whole words (revisions wait)."""
        if not hyp.startswith(self.partial) or len(hyp) == len(self.partial):
            return
        if self.partial and hyp[len(self.partial)] != " ":
            return
        delta, self.partial = hyp[len(self.partial):], hyp
        if self.config["input_audio_transcription"] is not None:
            await self.emit("conversation.item.input_audio_transcription.delta",
                            item_id=self.turn_item, content_index=0, delta=delta)

    async def on_input_audio_buffer_commit(self, event: dict, event_id: str | None) -> None:
        if self._ms(self.received - self.buf_start) < MIN_COMMIT_MS:
            await self.error("input_audio_buffer_commit_empty",
                             f"Error committing input audio buffer: buffer too small. Expected at least "
                             f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                             f"{self._ms(self.received - self.buf_start)}ms of audio.", None, event_id)
            return
        if self.turn_item is None:
            await self._begin_turn(self.buf_start)
        self.turn_start = self.buf_start  # a commit takes the whole uncommitted buffer
        await self._commit(self.received, auto=False)

    async def _commit(self, end: int, auto: bool) -> None:
        """The user turn [turn_start, end) becomes a conversation item; maybe a response follows."""
        item_id, start = self.turn_item, self.turn_start
        await self._feed_asr(end)
        transcript = (await self._asr).finish()
        await self._partial(transcript)
        self.buf_start = end
        self.turn_item = self.turn_start = None
        if self.vad:
            self.vad.reset(end)
        audio = bytes(self.record.input_audio[self.seg_byte + start * self.bps: self.seg_byte + end * self.bps])
        turn = Turn(item_id, audio, self.fmt, self.seg_ms + self._ms(start), self.seg_ms + self._ms(end),
                    transcript)
        self.record.turns.append(turn)  # recorded before the client can hear of it
        previous = self.items[-1]["id"] if self.items else None
        await self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        self.add_item(item, text=transcript)
        await self.emit("conversation.item.created", previous_item_id=previous, item=item)
        if self.config["input_audio_transcription"] is not None:
            await self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id,
                            content_index=0, transcript=transcript,
                            usage={"type": "duration", "seconds": round((end - start) / self.rate, 3)})
        td = self.config["turn_detection"]
        if auto and td and td.get("create_response", True) and self.response is None:
            self.start_response(Plan(), input_ms=self._ms(end - start))

    async def on_input_audio_buffer_clear(self, event: dict, event_id: str | None) -> None:
        if self.turn_item is not None:
            (await self._asr).finish()
        self.buf_start = self.received
        self.turn_item = self.turn_start = None
        if self.vad:
            self.vad.reset(self.received)
        await self.emit("input_audio_buffer.cleared")

    # -- conversation items --------------------------------------------------------------------

    def add_item(self, item: dict[str, Any], text: str | None = None) -> None:
        self.items.append(dict(item, _text=text) if text is not None else item)

    def _item(self, item_id: str) -> dict[str, Any] | None:
        return next((i for i in self.items if i.get("id") == item_id), None)

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    async def on_conversation_item_create(self, event: dict, event_id: str | None) -> None:
        item, problem = clean_item(event["item"])
        if problem:
            await self.error(*problem, event_id=event_id)
            return
        if item.get("id") and self._item(item["id"]):
            await self.error("invalid_value", f"Item '{item['id'][:64]}' already exists.", "item.id", event_id)
            return
        text = None
        if item["type"] == "function_call_output":
            call_id = item["call_id"]
            if call_id not in self.calls:
                await self.error("invalid_value", f"Tool call ID '{call_id[:64]}' not found in "
                                 f"conversation.", "item.call_id", event_id)
                return
            self.pending_outputs.append((self.calls[call_id], item["output"]))
            self.record.function_outputs.append(dict(item))
        elif item["type"] == "function_call":  # a client replaying a call, e.g. after a reconnect
            self.calls[item["call_id"]] = item["name"]
        elif item["type"] == "message" and item["role"] == "user":
            text = " ".join(p.get("text") or p.get("transcript") or "" for p in item["content"])
        previous = event.get("previous_item_id") or (self.items[-1]["id"] if self.items else None)
        item.setdefault("id", self.ids.new("item"))
        item.update(object="realtime.item", status="completed")
        self.add_item(item, text=text)
        await self.emit("conversation.item.created", previous_item_id=previous, item=self._public(item))

    async def on_conversation_item_truncate(self, event: dict, event_id: str | None) -> None:
        item_id, end_ms = event["item_id"], event["audio_end_ms"]
        reply = next((r for r in self.record.replies if r.item_id == item_id), None)
        if reply is None:
            await self.error("item_not_found", f"No assistant audio item '{item_id[:64]}'.", "item_id", event_id)
            return
        if event["content_index"] != 0:
            await self.error("invalid_value", "Only content_index 0 holds audio.", "content_index", event_id)
            return
        fmt = reply.audio_format
        duration_ms = len(reply.audio) * 1000 / (tts.rate_of(fmt) * tts.bytes_per_sample(fmt))
        if end_ms < 0 or end_ms > duration_ms:
            await self.error("invalid_value", f"audio_end_ms {end_ms} is beyond the item's audio "
                             f"({duration_ms:.0f} ms).", "audio_end_ms", event_id)
            return
        reply.truncated_ms = end_ms
        await self.emit("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)

    async def on_conversation_item_delete(self, event: dict, event_id: str | None) -> None:
        item = self._item(event["item_id"])
        if item is None:
            await self.error("item_not_found", f"No item '{event['item_id'][:64]}'.", "item_id", event_id)
            return
        self.items.remove(item)
        await self.emit("conversation.item.deleted", item_id=item["id"])

    async def on_conversation_item_retrieve(self, event: dict, event_id: str | None) -> None:
        item = self._item(event["item_id"])
        if item is None:
            await self.error("item_not_found", f"No item '{event['item_id'][:64]}'.", "item_id", event_id)
            return
        await self.emit("conversation.item.retrieved", item=self._public(item))

    # -- responses -----------------------------------------------------------------------------

    async def on_response_create(self, event: dict, event_id: str | None) -> None:
        if self.response is not None:
            await self.error("conversation_already_has_active_response", "Conversation already has an "
                             f"active response in progress: {self.response.id}.", None, event_id)
            return
        options = event.get("response") or {}
        modalities = options.get("modalities") or self.config["modalities"]
        if not isinstance(modalities, list) or not all(m in ("audio", "text") for m in modalities):
            await self.error("invalid_value", "Invalid value for 'response.modalities': a list of 'audio' "
                             "and 'text'.", "response.modalities", event_id)
            return
        self.start_response(Plan(modalities=tuple(modalities)), input_ms=0)

    async def on_response_cancel(self, event: dict, event_id: str | None) -> None:
        run = self.response
        wanted = event.get("response_id")
        if run is None or (wanted and wanted != run.id):
            await self.error("response_cancel_not_active", "Cancellation failed: no active response "
                             "found.", None, event_id)
            return
        await self.cancel_response("client_cancelled")

    def start_response(self, plan: Plan, input_ms: int) -> None:
        if self.pending_outputs:
            plan.text = self.server.script.after_tools(self.pending_outputs)
            self.pending_outputs = []
        else:
            said = next((i["_text"] for i in reversed(self.items) if i.get("_text") is not None), "")
            entry = self.server.script.reply_to(said)
            plan.text, plan.calls = entry.reply, entry.calls
        run = Run(self.ids.new("resp"), plan)
        self.response = run
        run.task = asyncio.create_task(self._respond(run, input_ms // 50))

    async def _respond(self, run: Run, input_tokens: int) -> None:
        try:
            if self.server.reply_delay_ms:
                await asyncio.sleep(self.server.reply_delay_ms / 1000)
            await responses.stream(self, run, input_tokens)
        except (ConnectionClosed, responses.Dropped):
            pass
        except Exception:
            log.exception("devserver: response %s failed", run.id)
        finally:
            run.done = True
            if self.response is run:
                self.response = None

    async def cancel_response(self, reason: str) -> None:
        """Stop the active response; returns once its response.done (cancelled) is sent."""
        run = self.response
        if run is None:
            return
        run.cancel(reason)
        if run.task is not None and run.task is not asyncio.current_task():
            await asyncio.gather(run.task, return_exceptions=True)
