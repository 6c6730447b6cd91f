"""The conversation's states: one owner (the conversation thread), shown on LEDs and in logs."""

from enum import Enum


class State(str, Enum):
    """Where the speaker is in a conversation."""

    IDLE = "idle"                  # waiting for the wake word or the button; no socket open
    OFFLINE = "offline"            # waiting; the service cannot be reached, answers come from the device
    CONNECTING = "connecting"      # triggered; opening the session, buffering the microphone
    LISTENING = "listening"        # streaming the microphone to the server
    THINKING = "thinking"          # the user's turn ended; waiting for the reply (or a tool runs)
    SPEAKING = "speaking"          # playing the reply; the microphone is held back
    FOLLOW_UP = "follow_up"        # reply done; the user may speak again without a trigger
    RECONNECTING = "reconnecting"  # the connection dropped mid-conversation; backing off
    MUTED = "muted"                # microphone off: nothing leaves the device, no wake word
    ERROR = "error"                # a fault that needs a person (bad key, no device)
