"""A local Mira-compatible realtime server: try the device, run the demo and the tests offline.

    from agent.devserver import DevServer
    with DevServer() as server:        # ws://127.0.0.1:<free port>/v1/realtime, any key
        ...
"""

from agent.devserver.faults import Faults
from agent.devserver.record import Handshake, Reply, SessionRecord, Turn
from agent.devserver.script import Call, Entry, Script
from agent.devserver.server import DevServer

__all__ = ["DevServer", "Faults", "Script", "Entry", "Call", "SessionRecord", "Turn", "Reply",
           "Handshake", "main"]


def main(argv: list[str] | None = None) -> int:
    """`mira-agent devserver ...`: see agent.devserver.cli."""
    from agent.devserver.cli import main as cli_main
    return cli_main(argv)
