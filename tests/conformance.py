"""Lint realtime events against the openai package's beta realtime models (PROTOCOL.md)."""

from typing import Annotated, Any

from openai.types.beta.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import Field, TypeAdapter

_client = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
_server = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])


def check_client_event(event: dict[str, Any]) -> None:
    """Raise pydantic.ValidationError unless the event is a valid client event."""
    _client.validate_python(event)


def check_server_event(event: dict[str, Any]) -> None:
    """Raise pydantic.ValidationError unless the event is a valid server event."""
    _server.validate_python(event)
