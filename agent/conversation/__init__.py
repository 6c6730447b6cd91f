"""The conversation, in rooms: the state machine uses a frame router and a session link.

    machine.py   Conversation: the states and the transitions the user and the box cause
    server_side.py  ... and those the server causes (link news, server events, tool results)
    offline.py   ... and those of a service that cannot be reached (the link's health, turns
                 answered on the device)
    control.py   ... and what the daemon and the box tell it (reload, devices, timers, stop)
    loop.py      Inbox: what other threads may call (they only post), and the loop serving it
    reply.py     the reply's audio to the speaker, both sides' words to the log and the history
    router.py    FrameRouter: where each microphone frame goes (canceller, pre-roll, wake word,
                 voice barge-in, the link)
    link.py      SessionLink: the connection to Mira across drops, and what a drop leaves owed
    turn.py      Turn: the facts of one exchange, living as long as it does
    tools.py     ToolRunner: tool calls off the conversation thread
"""

from agent.conversation.control import Reopen
from agent.conversation.link import Owed, SessionLink, ToolOutcome
from agent.conversation.machine import Conversation
from agent.conversation.router import FrameRouter, Heard
from agent.conversation.turn import Turn

__all__ = ["Conversation", "Reopen", "SessionLink", "Owed", "ToolOutcome", "FrameRouter", "Heard",
           "Turn"]
