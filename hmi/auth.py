"""Sessions, CSRF tokens and the login rate limit: the HMI's security state, all in memory.

Sessions are server-side (the cookie holds only a random token), so logging out or restarting
the HMI ends them for certain, and nothing about a user is trusted from the browser. Each
session has its own CSRF token, sent back with every POST. Failed logins are counted per user
name and per client address: guessing is slowed down whether the attacker tries many
passwords on one account or one password on many.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["LoginLimiter", "Session", "Sessions", "same_token"]

Clock = Callable[[], float]


def same_token(a: str | None, b: str) -> bool:
    """Constant-time comparison (a token compared with ``==`` leaks its prefix by timing)."""
    return bool(a) and hmac.compare_digest(str(a).encode(), b.encode())


@dataclass(slots=True)
class Session:
    token: str
    user: str
    hash_tag: str  # the password hash's fingerprint at login (see User.hash_tag)
    csrf: str
    created: float
    last_seen: float


@dataclass(slots=True)
class Sessions:
    """The session table: token -> session, with idle and absolute expiry."""

    idle_s: float = 3600.0
    max_age_s: float = 12 * 3600.0
    clock: Clock = time.monotonic
    _by_token: dict[str, Session] = field(default_factory=dict)

    def create(self, user: str, hash_tag: str) -> Session:
        self.prune()
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), user, hash_tag, secrets.token_urlsafe(32), now, now)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session for ``token``; ``touch`` counts this request as activity (an SSE
        stream does not: a screen left open must still log out when nobody uses it)."""
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None:
            return None
        now = self.clock()
        if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s:
            self._by_token.pop(token, None)
            return None
        if touch:
            s.last_seen = now
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def drop_user(self, user: str) -> None:
        for token in [t for t, s in self._by_token.items() if s.user == user]:
            del self._by_token[token]

    def prune(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items()
                      if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s]:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)


@dataclass(slots=True)
class LoginLimiter:
    """At most ``max_failures`` failed logins per key within ``window_s``; then the key must wait.

    Keys are ``user:<name>`` and ``addr:<client address>``. Memory is bounded: keys whose last
    failure left the window are forgotten, and at most ``max_keys`` are kept.
    """

    max_failures: int = 5
    window_s: float = 60.0
    max_keys: int = 10_000
    clock: Clock = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again; 0 when none is blocked."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            q = self._failures.get(key)
            if q is None:
                continue
            while q and now - q[0] >= self.window_s:
                q.popleft()
            if len(q) >= self.max_failures:
                wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            q = self._failures.setdefault(key, deque(maxlen=self.max_failures))
            q.append(now)
        if len(self._failures) > self.max_keys:
            self._prune(now)

    def succeeded(self, key: str) -> None:
        """A good login clears its user's count (never its address's: one account an attacker
        owns must not reset the count of the address it guesses others' passwords from)."""
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or now - q[-1] >= self.window_s]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:  # still too many: the oldest go
            del self._failures[next(iter(self._failures))]
