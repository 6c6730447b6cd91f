"""Optional parts (pip extras): when one a command needs is missing, one sentence says what to install."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

from agent.errors import MiraAgentError

# What each extra's packages are imported as (the distribution names differ from module names).
MODULES = {"devserver": ("websockets", "pocketsphinx")}


def _requirements(extra: str) -> list[str]:
    """The extra's requirement strings as pyproject.toml declares them, e.g. 'websockets>=13'."""
    try:
        declared = importlib.metadata.requires("mira-agent") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";")[0].strip() for r in declared if marker.search(r)]


def require_extra(extra: str, command: str) -> None:
    """MiraAgentError naming the pip command when a module of `extra` cannot be imported."""
    missing = []
    for module in MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return
    pip = Path(sys.executable).with_name("pip")
    packages = " ".join(f"'{r}'" for r in _requirements(extra)) or f"'mira-agent[{extra}]'"
    raise MiraAgentError(f"{command} needs the {extra} extra, which is not installed here "
                         f"(no {', '.join(missing)}): run {pip} install {packages}")
