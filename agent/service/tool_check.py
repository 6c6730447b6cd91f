"""`mira-agent check`'s tool rows: each command's program and each HTTP token as the service reaches them.

Under the installed unit the daemon runs as its own user, with systemd's PATH, /home and /root
hidden (ProtectHome=) and a private /tmp (PrivateTmp=): a program or token file that works for the
person running the check can still be out of the service's reach. Where no unit is installed,
the files are checked as the current user sees them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config
from agent.errors import MiraAgentError
from agent.secrets import find_secret
from agent.service.sandbox import SERVICE_PATH, Sandbox
from agent.tools.command import program
from agent.tools.settings import CommandAction, HttpAction, ToolSettings


@dataclass(frozen=True)
class Finding:
    """One tool's verdict: ok, what was found, and for a problem the fix."""

    ok: bool
    detail: str
    fix: str = ""


def check_tool(tool: ToolSettings, cfg: Config, sandbox: Sandbox | None) -> Finding | None:
    """The verdict on one tool, or None for tools with nothing to check (gpio, builtin)."""
    action = tool.action
    if isinstance(action, CommandAction):
        return _command(action, cfg, sandbox)
    if isinstance(action, HttpAction) and action.header_secret_files:
        return _tokens(tool.name, action, cfg, sandbox)
    return None


def _as_whom(sandbox: Sandbox | None) -> str:
    return f"user {sandbox.user}" if sandbox is not None else "this user"


def _reach(path: Path, mode: int, sandbox: Sandbox | None) -> str | None:
    """Why the daemon could not read/run path, or None."""
    if sandbox is not None:
        return sandbox.cannot(path, mode)
    if not path.exists():
        return f"{path} does not exist"
    if not os.access(path, mode):
        return f"this user may not {'read' if mode == os.R_OK else 'run'} {path}"
    return None


def _command(action: CommandAction, cfg: Config, sandbox: Sandbox | None) -> Finding:
    name = program(action, cfg.resolve)
    if "/" in name:
        path: Path | None = Path(name)
    else:
        search = SERVICE_PATH if sandbox is not None else os.environ.get("PATH", os.defpath)
        found = shutil.which(name, path=search)
        if found is None:
            where = "the service's PATH" if sandbox is not None else "PATH"
            return Finding(False, f"program {name!r} is not in {where} ({search})",
                           f"install it, or give its full path in the tool's argv[0] "
                           f"(e.g. /usr/local/bin/{name})")
        path = Path(found)
    why = _reach(path, os.X_OK, sandbox)
    if why:
        return Finding(False, f"program: {why}",
                       f"put the program under /usr/local/bin or /opt (the service sees those), "
                       f"chmod 755 it, and give that path in argv[0]")
    folder = cfg.resolve(action.cwd) if action.cwd else cfg.base_dir
    why = _reach(folder, os.X_OK, sandbox)
    if why:
        return Finding(False, f"working folder: {why}",
                       "set the tool's cwd to a folder the service can enter (e.g. /var/lib/mira-agent)")
    return Finding(True, f"runs {path} as {_as_whom(sandbox)}")


def _tokens(tool: str, action: HttpAction, cfg: Config, sandbox: Sandbox | None) -> Finding:
    sources = []
    for header, file in action.header_secret_files.items():
        path = cfg.resolve(file)
        credential = path.name
        if sandbox is not None and credential in sandbox.credentials:
            source = Path(sandbox.credentials[credential])
            try:
                present = source.is_file()
            except OSError:
                present = True  # not ours to look at: systemd reads it as root
            if not present:
                return Finding(False, f"{header} token: the credential {credential} loads "
                                      f"{source}, which does not exist",
                               f"write the token to {source} (sudo install -m 600 /dev/stdin {source})")
            sources.append(f"{header} from the credential {credential}")
            continue
        why = _reach(path, os.R_OK, sandbox) if sandbox is not None else None
        if why:
            return Finding(False, f"{header} token: {why}",
                           f"hand it to the service as a credential: sudo systemctl edit mira-agent, "
                           f"add the lines [Service] and LoadCredential={credential}:{path}, then "
                           f"sudo systemctl restart mira-agent")
        try:
            find_secret(credential=credential, file=str(path), env="", what=f"{header} token",
                        key=f"tools {tool!r} header_secret_files.{header}")
        except MiraAgentError as e:
            return Finding(False, str(e), f"write the token to {path}, readable only by "
                                          f"{_as_whom(sandbox)} (chmod 600)")
        sources.append(f"{header} from {path}")
    return Finding(True, "token " + ", ".join(sources))


def tools_to_check(cfg: Config) -> list[ToolSettings]:
    """The configured tools that have something the service must reach."""
    return [t for t in cfg.settings.tools if isinstance(t.action, CommandAction)
            or (isinstance(t.action, HttpAction) and t.action.header_secret_files)]
