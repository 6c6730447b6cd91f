"""Tool calls run off the conversation thread; their outcomes come back to it as one message."""

from __future__ import annotations

import threading
from typing import Callable

from agent.conversation.link import ToolOutcome

NO_TOOLS = '{"error": "no tools on this device"}'


class ToolRunner:
    """Runs a reply's calls in order on a worker thread and posts ("tools_done", ...) when done."""

    def __init__(self, post: Callable[..., None]):
        self._post = post
        self.toolbox = None
        self.running = 0
        """Batches of calls started and not yet back (the conversation thread's count)."""

    def start(self, calls: list[tuple[str, str, str]], *, generation: int, connection: int) -> None:
        """Run (call_id, name, arguments) calls; the outcome names the conversation and connection."""
        self.running += 1
        toolbox = self.toolbox

        def work() -> None:
            outcomes = []
            for call_id, name, arguments in calls:  # in order, each with its own output
                if toolbox is None:
                    outcomes.append(ToolOutcome(call_id, name, NO_TOOLS, False, arguments or "",
                                                connection))
                    continue
                result = toolbox.run(name, arguments)
                outcomes.append(ToolOutcome(call_id, name, result.output, result.ok, arguments or "",
                                            connection))
            self._post("tools_done", generation, outcomes)

        threading.Thread(target=work, name="tool-call", daemon=True).start()

    def finished(self) -> None:
        self.running -= 1
