"""python -m agent.devserver [--host H] [--port P] ...: the same as `mira-agent devserver`."""

import sys

from agent.devserver.cli import main

sys.exit(main(sys.argv[1:]))
