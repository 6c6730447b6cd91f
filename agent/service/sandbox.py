"""What the service can reach under its systemd unit: its user, the paths it cannot see, its credentials.

`mira-agent check` asks here whether a tool's program, folder and secret files will work for the
daemon as systemd runs it (User=, ProtectHome=, PrivateTmp=, LoadCredential=), not merely for
the person running the check. Read from the installed unit and its drop-ins:

    sandbox = Sandbox.installed()            # None when the unit is not installed here
    sandbox.cannot(Path("/home/pi/bin/radio"), os.X_OK)
    -> "/home/pi/bin/radio is under /home, which the service cannot see (ProtectHome=yes)"
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

INSTALLED_UNIT = Path("/etc/systemd/system/mira-agent.service")
# systemd's PATH for services (systemd.exec(5), "Environment variables in spawned processes").
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HOME_DIRS = ("/home", "/root", "/run/user")
_TMP_DIRS = ("/tmp", "/var/tmp")
_TRUE = {"1", "yes", "true", "on"}


@dataclass(frozen=True)
class Account:
    """A user as the kernel checks permissions: uid and every group id."""

    name: str
    """The user name."""
    uid: int
    """Numeric user id."""
    gids: frozenset[int]
    """Primary and supplementary group ids."""

    @classmethod
    def lookup(cls, name: str, extra_groups: tuple[str, ...] = ()) -> Account | None:
        """The local user `name` with its groups plus `extra_groups` (the unit's
        SupplementaryGroups=), or None when there is no such user here."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        for group in extra_groups:
            try:
                gids.add(grp.getgrnam(group).gr_gid)
            except KeyError:
                pass
        return cls(name, pw.pw_uid, frozenset(gids))

    def may(self, path: Path, mode: int) -> bool:
        """True when the mode bits let this user read (R_OK) or run (X_OK) the path, and search
        every folder above it. (ACLs are not looked at.)"""
        try:
            parents = [p for p in reversed(path.parents)]
            return all(self._allowed(os.stat(p), os.X_OK) for p in parents) and \
                self._allowed(os.stat(path), mode)
        except OSError:
            return False

    def _allowed(self, st: os.stat_result, mode: int) -> bool:
        if self.uid == 0:
            return mode != os.X_OK or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
        shift = 6 if st.st_uid == self.uid else 3 if st.st_gid in self.gids else 0
        want = (4 if mode == os.R_OK else 1) << shift
        return bool(st.st_mode & want)


@dataclass(frozen=True)
class Sandbox:
    """The parts of a service unit that decide what the daemon's tools can reach."""

    unit: Path
    """The unit file read (its drop-ins in `<unit>.d/` too)."""
    user: str = "root"
    """User= (the daemon's user)."""
    groups: tuple[str, ...] = ()
    """SupplementaryGroups=."""
    protect_home: str = "no"
    """ProtectHome=: no, yes, read-only or tmpfs."""
    private_tmp: bool = False
    """PrivateTmp=: /tmp and /var/tmp are the service's own, empty at start."""
    credentials: dict[str, str] = field(default_factory=dict)
    """LoadCredential= name -> source file."""

    @classmethod
    def installed(cls) -> Sandbox | None:
        """The installed unit's sandbox, or None when mira-agent is not installed as a service."""
        return cls.from_unit(INSTALLED_UNIT) if INSTALLED_UNIT.is_file() else None

    @classmethod
    def from_unit(cls, unit: Path) -> Sandbox:
        """Read the unit's [Service] section and its drop-ins, as systemd merges them."""
        unit = Path(unit)
        files = [unit, *sorted(Path(f"{unit}.d").glob("*.conf"))]
        values: dict[str, str] = {}
        creds: dict[str, str] = {}
        groups: list[str] = []
        for path in files:
            for section, key, value in unit_entries(path.read_text(encoding="utf-8")):
                if section != "Service":
                    continue
                if key == "LoadCredential":
                    if not value:
                        creds.clear()  # an empty assignment resets the list
                    elif ":" in value:
                        name, source = value.split(":", 1)
                        creds[name] = source
                elif key == "SupplementaryGroups":
                    groups = groups + value.split() if value else []
                else:
                    values[key] = value
        return cls(unit, user=values.get("User", "root") or "root", groups=tuple(groups),
                   protect_home=values.get("ProtectHome", "no").lower(),
                   private_tmp=values.get("PrivateTmp", "no").lower() in _TRUE, credentials=creds)

    def account(self) -> Account | None:
        """The service's user on this machine, or None when it does not exist here."""
        return Account.lookup(self.user, self.groups)

    def hidden(self, path: Path) -> str | None:
        """Why the service cannot see `path` at all, or None."""
        text = str(path)
        home = "yes" if self.protect_home in _TRUE else self.protect_home
        if home in ("yes", "tmpfs"):
            for top in _HOME_DIRS:
                if text == top or text.startswith(top + "/"):
                    return f"{path} is under {top}, which the service cannot see (ProtectHome={home})"
        if self.private_tmp:
            for top in _TMP_DIRS:
                if text == top or text.startswith(top + "/"):
                    return f"{path} is under {top}, which is the service's own, empty folder (PrivateTmp=yes)"
        return None

    def cannot(self, path: Path, mode: int) -> str | None:
        """Why the service's user cannot read (os.R_OK) or run (os.X_OK) `path`, or None."""
        path = Path(os.path.realpath(path))
        why = self.hidden(path)
        if why:
            return why
        if not path.exists():
            return f"{path} does not exist"
        user = self.account()
        if user is None:
            return None  # the user does not exist here: nothing more can be told
        if not user.may(path, mode):
            st = path.stat()
            owner = _name(pwd.getpwuid, st.st_uid)
            verb = "read" if mode == os.R_OK else "run"
            return (f"user {self.user} may not {verb} {path} (owner {owner}, mode "
                    f"{stat.S_IMODE(st.st_mode):04o}, or a folder above it is closed)")
        return None


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment of a unit file, in order (keys may repeat)."""
    out, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out
