"""Logins and sessions of the local ICAT server.

ICAT delegates passwords to authenticator plugins and keeps sessions with a
fixed lifetime that ``refresh`` restarts.  Here the plugins ``simple`` and
``db`` (and any other an account names) check the configured accounts: an
account ``AUTH/NAME`` belongs to authenticator AUTH only, a plain ``NAME``
to every one.  The user name is ``<plugin>/<name>`` as ICAT reports it; the
root users (``rootUserNames``) are named that way.  Error types and messages
are ICAT's (type SESSION), because clients show them to users and python-icat
maps them to its exception classes.

What a user may do is decided by the catalogue's rules (``store/authz.py``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time

from ..client import SessionError
from ..store.authz import ROOT_USERS

PLUGINS = ("simple", "db")


class Sessions:
    """Session ids → (user name, expiry), safe to use from several threads."""

    def __init__(self, accounts: dict[str, str], lifetime_minutes: float = 120.0,
                 clock=time.monotonic, root_users=ROOT_USERS):
        self.accounts = dict(accounts)
        self.root_users = frozenset(root_users)
        self.plugins = tuple(PLUGINS) + tuple(sorted(
            {a.partition("/")[0] for a in accounts if "/" in a} - set(PLUGINS)))
        self.lifetime = lifetime_minutes * 60.0
        self.clock = clock
        self._sessions: dict[str, list] = {}
        self._lock = threading.Lock()

    def authenticators(self) -> list[dict]:
        """What ``getAuthenticatorInfo`` reports: plugins and credential keys."""
        keys = [{"name": "username", "hide": False}, {"name": "password", "hide": True}]
        return [{"mnemonic": p, "friendly": None, "admin": False, "keys": keys}
                for p in self.plugins]

    def is_root(self, user: str) -> bool:
        """Whether ``user`` (``plugin/name``) is one of ``rootUserNames``."""
        return user in self.root_users

    def login(self, plugin: str, credentials: dict) -> str:
        if plugin not in self.plugins:
            raise SessionError("Authenticator mnemonic %s not recognised" % plugin)
        name = credentials.get("username")
        password = credentials.get("password")
        if not name:
            raise SessionError("The username cannot be null or empty.")
        if not password:
            raise SessionError("The password cannot be null or empty.")
        expected = self.accounts.get("%s/%s" % (plugin, name), self.accounts.get(name))
        # compare_digest: no timing hint about how much of a password matched.
        if expected is None or not hmac.compare_digest(
                expected.encode("utf-8"), password.encode("utf-8")):
            raise SessionError("The username and password do not match")
        sid = secrets.token_hex(16)
        sid = "%s-%s-%s-%s-%s" % (sid[:8], sid[8:12], sid[12:16], sid[16:20], sid[20:])
        with self._lock:
            self._expire()
            self._sessions[sid] = ["%s/%s" % (plugin, name), self.clock() + self.lifetime]
        return sid

    def _expire(self):
        now = self.clock()
        for sid in [s for s, (_, exp) in self._sessions.items() if exp <= now]:
            del self._sessions[sid]

    def _lookup(self, sid) -> list:
        if not sid:
            raise SessionError("Session Id cannot be null or empty.")
        session = self._sessions.get(sid)
        if session is None or session[1] <= self.clock():
            self._sessions.pop(sid, None)
            raise SessionError("Unable to find user by sessionid: %s" % sid)
        return session

    def user(self, sid) -> str:
        """The user name of a live session (SessionError otherwise)."""
        with self._lock:
            return self._lookup(sid)[0]

    def remaining_minutes(self, sid) -> float:
        with self._lock:
            return (self._lookup(sid)[1] - self.clock()) / 60.0

    def refresh(self, sid) -> None:
        with self._lock:
            self._lookup(sid)[1] = self.clock() + self.lifetime

    def logout(self, sid) -> None:
        with self._lock:
            self._lookup(sid)
            del self._sessions[sid]
