"""One model response, streamed: spoken audio with its transcript, or function calls.

Audio goes out in chunks faster than real time with a short sleep between them, so a cancel
(a barge-in append or response.cancel) lands between two chunks.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.devserver import tts
from agent.devserver.events import Ids
from agent.devserver.record import Reply, SessionRecord
from agent.devserver.script import Call


class Session(Protocol):
    """What a streaming response needs of its session (agent.devserver.session.Session, which
    imports this module: the dependency goes one way)."""

    ids: Ids
    config: dict[str, Any]
    record: SessionRecord
    calls: dict[str, str]
    server: Any
    """The DevServer: tts, chunk_ms, speed and faults are read from it."""

    async def emit(self, kind: str, **fields: Any) -> None: ...

    def add_item(self, item: dict[str, Any], text: str | None = None) -> None: ...

    async def fault(self, kind: str) -> None: ...


class Dropped(Exception):
    """The connection was faulted on purpose mid-response: stop without another event."""


@dataclass
class Plan:
    """What a response will do: speak `text`, or make `calls`."""

    text: str = ""
    calls: tuple[Call, ...] = ()
    modalities: tuple[str, ...] = ("audio", "text")


@dataclass
class Run:
    """A response in flight."""

    id: str
    plan: Plan
    audio_started: bool = False
    audio_ms: int = 0
    done: bool = False
    cancel_reason: str | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason


def _response(run: Run, status: str, **extra) -> dict[str, Any]:
    return {"id": run.id, "object": "realtime.response", "status": status,
            "status_details": extra.pop("status_details", None), "output": run.output, **extra}


def _usage(input_tokens: int, text: str, audio_ms: int) -> dict[str, Any]:
    text_tokens = len(text.split())
    audio_tokens = audio_ms // 50
    out = text_tokens + audio_tokens
    return {"total_tokens": input_tokens + out, "input_tokens": input_tokens, "output_tokens": out,
            "input_token_details": {"text_tokens": 0, "audio_tokens": input_tokens, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens}}


async def stream(s: Session, run: Run, input_tokens: int) -> None:
    """Send the whole response; ends with response.done (completed or cancelled)."""
    await s.emit("response.created", response=_response(run, "in_progress"))
    if run.plan.calls:
        await _calls(s, run)
        status = "completed"
    else:
        status = await _message(s, run)
    run.done = True
    if status == "cancelled":
        details = {"type": "cancelled", "reason": run.cancel_reason}
        await s.emit("response.done", response=_response(run, "cancelled", status_details=details,
                                                          usage=_usage(input_tokens, "", 0)))
    else:
        await s.emit("response.done", response=_response(
            run, "completed", usage=_usage(input_tokens, run.plan.text, run.audio_ms)))


async def _calls(s: Session, run: Run) -> None:
    for index, call in enumerate(run.plan.calls):
        item_id, call_id = s.ids.new("item"), s.ids.new("call")
        item = {"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": call.name, "call_id": call_id, "arguments": ""}
        where = {"response_id": run.id, "item_id": item_id, "output_index": index}
        await s.emit("response.output_item.added", response_id=run.id, output_index=index, item=dict(item))
        s.add_item(dict(item, status="completed", arguments=call.arguments_json))
        args = call.arguments_json
        half = max(1, len(args) // 2)
        for piece in (args[:half], args[half:]):
            if piece:
                await s.emit("response.function_call_arguments.delta", **where, call_id=call_id, delta=piece)
        await s.emit("response.function_call_arguments.done", **where, call_id=call_id, arguments=args)
        item.update(status="completed", arguments=args)
        run.output.append(item)
        await s.emit("response.output_item.done", response_id=run.id, output_index=index, item=item)
        s.calls[call_id] = call.name


async def _message(s: Session, run: Run) -> str:
    """Speak (or write) the reply text; returns "completed" or "cancelled"."""
    text = run.plan.text
    audio = "audio" in run.plan.modalities
    fmt = s.config["output_audio_format"]
    pcm = await s.server.tts.speak(text) if audio else None
    item_id = s.ids.new("item")
    item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "in_progress", "content": []}
    where = {"response_id": run.id, "item_id": item_id, "output_index": 0, "content_index": 0}
    await s.emit("response.output_item.added", response_id=run.id, output_index=0, item=dict(item))
    s.add_item(item)
    part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
    await s.emit("response.content_part.added", **where, part=part)
    reply = Reply(run.id, item_id, text, audio_format=fmt)
    s.record.replies.append(reply)
    if audio:
        cancelled = await _audio(s, run, where, reply, tts.encode(pcm, fmt), fmt)
    else:
        cancelled = await _text(s, run, where)
    content = {"type": "audio", "transcript": text} if audio else {"type": "text", "text": text}
    if cancelled:
        reply.status = "incomplete"
        item.update(status="incomplete", content=[content])
        run.output.append(item)
        await s.emit("response.output_item.done", response_id=run.id, output_index=0, item=item)
        return "cancelled"
    if audio:
        await s.emit("response.audio.done", **where)
        await s.emit("response.audio_transcript.done", **where, transcript=text)
    else:
        await s.emit("response.text.done", **where, text=text)
    await s.emit("response.content_part.done", **where, part=content)
    reply.status = "completed"
    item.update(status="completed", content=[content])
    run.output.append(item)
    await s.emit("response.output_item.done", response_id=run.id, output_index=0, item=item)
    return "completed"


async def _audio(s: Session, run: Run, where: dict, reply: Reply, data: bytes, fmt: str) -> bool:
    """Stream the audio bytes and the transcript words; True when cancelled part way."""
    step = tts.rate_of(fmt) * s.server.chunk_ms // 1000 * tts.bytes_per_sample(fmt)
    chunks = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
    words = run.plan.text.split()
    said = 0
    for n, chunk in enumerate(chunks):
        if run.cancel_reason:
            return True
        # Each word is sent as its share of the audio starts, as the real service roughly does.
        due = len(words) if n == len(chunks) - 1 else (n + 1) * len(words) // len(chunks)
        if due > said:
            delta = " ".join(words[said:due]) + ("" if due == len(words) else " ")
            await s.emit("response.audio_transcript.delta", **where, delta=delta)
            said = due
        await s.emit("response.audio.delta", **where, delta=base64.b64encode(chunk).decode())
        reply.audio += chunk
        run.audio_started = True
        run.audio_ms = len(reply.audio) * 1000 // (tts.rate_of(fmt) * tts.bytes_per_sample(fmt))
        faults = s.server.faults
        if faults.mid_response and n + 1 >= faults.after_deltas:
            fault = faults.take_mid_response()
            await s.fault(fault)
            raise Dropped(fault)
        await asyncio.sleep(s.server.chunk_ms / 1000 / s.server.speed)
    return bool(run.cancel_reason)


async def _text(s: Session, run: Run, where: dict) -> bool:
    words = run.plan.text.split(" ")
    for n, word in enumerate(words):
        if run.cancel_reason:
            return True
        await s.emit("response.text.delta", **where, delta=word if n == len(words) - 1 else word + " ")
        await asyncio.sleep(0)
    return False
