"""HMI users and their roles, kept in a small JSON file with argon2id password hashes.

The file is the only place a password lives (as a hash), written atomically with mode 0600 so
that a crash mid-write never leaves a half file and other local users cannot read the hashes.
The HMI process only reads it (re-reading when it changes, so `sortctl users` takes effect at
once); `sortctl users` is the only writer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "NAME_RULE",
    "Role",
    "User",
    "UserError",
    "UserFile",
    "default_users_path",
    "first_user_hint",
]

NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MIN_PASSWORD = 8
FILE_VERSION = 1


class Role(StrEnum):
    """What a user may do; each role includes everything the ones before it may."""

    VIEWER = "viewer"  # read only
    OPERATOR = "operator"  # PackML commands, alarms, chutes out/in
    ENGINEER = "engineer"  # everything: sort plans, unit mode, manifests too

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    hash: str
    created: float = 0.0
    changed: float = 0.0

    @property
    def hash_tag(self) -> str:
        """A short fingerprint of the password hash: a session remembers it, so a password
        changed with `sortctl users passwd` ends the sessions opened with the old one."""
        return self.hash[-16:]


class UserError(Exception):
    """A bad user name, role or password, or an unreadable users file; the message says which."""


def default_users_path(db: Path) -> Path:
    """Users live beside the event store unless told otherwise (one directory to back up)."""
    return db.parent / "hmi-users.json"


def first_user_hint(users_path: Path) -> str:
    """The exact command that creates the first user (there is never a default password)."""
    return f"sortctl users add NAME --role engineer --users {users_path}"


class UserFile:
    """The users file: load, look up, verify a password; add, change, remove (atomic writes).

    ``hasher`` defaults to argon2-cffi's RFC 9106 low-memory profile (argon2id); tests pass a
    cheaper one. Verifying always uses the parameters stored in the hash itself.
    """

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._users: dict[str, User] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._dummy = ""

    # -- reading ----------------------------------------------------------------------------
    def load(self) -> dict[str, User]:
        """Read the file if it changed since the last read; a missing file means no users."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every save is a new file: a new inode
        if stamp == self._stamp:
            return self._users
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = {
                name: User(name, Role(u["role"]), str(u["hash"]), float(u.get("created", 0)),
                           float(u.get("changed", 0)))
                for name, u in dict(data.get("users", {})).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{self.path}: not a users file ({exc})") from exc
        self._users, self._stamp = users, stamp
        return users

    def insecure_mode(self) -> bool:
        """True when group or others may read the file (it should be 0600)."""
        try:
            return bool(stat.S_IMODE(self.path.stat().st_mode) & 0o077)
        except FileNotFoundError:
            return False

    def get(self, name: str) -> User | None:
        return self.load().get(name)

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; None otherwise (unknown name included)."""
        user = self.load().get(name)
        return user if self.password_matches(user, password) else None

    def password_matches(self, user: User | None, password: str) -> bool:
        """CPU only (no file access): safe on a worker thread. An unknown user is checked
        against a dummy hash, so a wrong name costs as long as a wrong password."""
        if user is None and not self._dummy:
            self._dummy = self.hasher.hash(secrets.token_hex(16))
        try:
            self.hasher.verify(user.hash if user else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return user is not None

    # -- writing ----------------------------------------------------------------------------
    def add(self, name: str, role: Role, password: str) -> User:
        users = dict(self.load())
        check_name(name)
        if name in users:
            raise UserError(f"user {name!r} exists already (use `sortctl users passwd {name}`)")
        check_password(password)
        now = time.time()
        users[name] = User(name, role, self.hasher.hash(password), now, now)
        self._save(users)
        return users[name]

    def passwd(self, name: str, password: str, role: Role | None = None) -> User:
        users = dict(self.load())
        old = users.get(name)
        if old is None:
            raise UserError(f"no user {name!r}")
        check_password(password)
        users[name] = User(name, role or old.role, self.hasher.hash(password), old.created, time.time())
        self._save(users)
        return users[name]

    def remove(self, name: str) -> None:
        users = dict(self.load())
        if users.pop(name, None) is None:
            raise UserError(f"no user {name!r}")
        self._save(users)

    def _save(self, users: dict[str, User]) -> None:
        """Write a temporary file (mode 0600 from its creation), fsync it, rename it over."""
        data = {
            "version": FILE_VERSION,
            "users": {
                u.name: {"role": u.role.value, "hash": u.hash, "created": u.created, "changed": u.changed}
                for u in sorted(users.values(), key=lambda u: u.name)
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hmi-users.", dir=self.path.parent)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None


def check_name(name: str) -> None:
    if not NAME_RULE.match(name):
        raise UserError(
            f"bad user name {name!r}: 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise UserError("password must not start or end with spaces or hold a line break")
