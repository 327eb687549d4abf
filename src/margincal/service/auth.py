"""API keys and roles.

A key looks like ``mc_<key_id>_<secret>``: ``key_id`` (12 hex characters) is
public and is the row's primary key in the store's ``api_keys`` table; the
secret (43 URL-safe characters, 256 bits) is shown once at creation and never
stored. The table keeps ``key_hash = "hmac-sha256$<salt hex>$<digest hex>"``
with ``digest = HMAC-SHA256(key=salt, msg=secret)`` and a fresh 16-byte salt
per key. Checking a key looks the row up by ``key_id`` and compares digests
with :func:`hmac.compare_digest` (constant time); an unknown ``key_id`` still
costs one HMAC and one comparison against a dummy digest, so timing does not
tell which ids exist. A secret with 256 bits of entropy needs no slow
(password) hash: brute force is out of reach whatever the hash speed.

Roles and what they may do (:data:`PERMISSIONS`):

=============  =====================================================
viewer         read: instruments, parameter sets, signals, proposals, results
trader         read + margin queries (portfolio margin, what-if / pre-trade)
risk_officer   read + margin + approve / reject proposals (never their own)
admin          read + margin + manage keys + policy
=============  =====================================================

Admins do not approve proposals: whoever can mint keys should not also be the
second pair of eyes (segregation of duties). Names are identities: they are
normalised (:func:`normalize_name`: whitespace collapsed, casefolded) and
unique over every key ever created, so nobody can mint a second key acting as
an existing person ("Alice" and "alice " are one name); system actors
(``monitor``, ``cli``...) are reserved. Keys with the deciding role
(``risk_officer``) are issued only by the store owner from the command line
(``margincal keys create``), never through the service, so an admin cannot
mint themselves an approver; each key records who minted it (``created_by``).
A key's holder rotates it with ``margincal keys rotate --key OLD`` (same name,
new secret, old key revoked).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import duckdb

from margincal.data import audit
from margincal.data.store import transaction, utcnow
from margincal.errors import AuthError, ConfigError

ROLES: tuple[str, ...] = ("viewer", "trader", "risk_officer", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "margin"}),
    "risk_officer": frozenset({"read", "margin", "decide"}),
    "admin": frozenset({"read", "margin", "keys", "policy"}),
}

KEY_PREFIX = "mc"
_KEY_RE = re.compile(r"^mc_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_DUMMY_SALT = b"\x00" * 16
_DUMMY_HASH = hmac.new(_DUMMY_SALT, b"x", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and name (the actor recorded in the audit log)."""

    key_id: str
    role: str
    name: str

    @property
    def permissions(self) -> frozenset[str]:
        return PERMISSIONS[self.role]

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``key`` is the only time the secret exists outside the caller's hands."""

    key_id: str
    key: str
    role: str
    name: str


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``hmac-sha256$<salt hex>$<digest hex>`` of ``secret`` with a new random salt (or the one given)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256${salt.hex()}${digest}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored ``hmac-sha256$salt$digest`` string."""
    try:
        scheme, salt_hex, digest = (stored or "").split("$")
        salt = bytes.fromhex(salt_hex)
        ok_format = scheme == "hmac-sha256" and len(digest) == 64
    except ValueError:
        salt, digest, ok_format = _DUMMY_SALT, _DUMMY_HASH, False
    calc = hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(calc, digest) and ok_format


def parse_key(key: str) -> tuple[str, str] | None:
    """Split ``mc_<key_id>_<secret>``; None when the text is not shaped like a key."""
    m = _KEY_RE.match(key.strip())
    return (m.group(1), m.group(2)) if m else None


RESERVED_NAMES = frozenset({"monitor", "monitor-cli", "cli", "calibrator", "margincal-run", "system",
                            "auto-adjust", "policy", "seed", "anonymous"})


def normalize_name(name: str) -> str:
    """The identity of a name: surrounding whitespace stripped, inner runs collapsed, casefolded."""
    return " ".join(str(name).split()).casefold()


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def create_key(con: duckdb.DuckDBPyConnection, role: str, name: str | None = None, *, actor: str = "cli",
               via_service: bool = False) -> NewKey:
    """Create a key with ``role`` (stored hashed) and audit it; returns the key text, shown only this once.

    ``name`` is the holder's identity: normalised and unique over every key ever created (revoked
    ones included), and not a reserved system actor. ``via_service=True`` (an admin over HTTP) may
    not create ``risk_officer`` keys.
    """
    _check_role(role)
    if via_service and role == "risk_officer":
        raise AuthError("risk_officer keys are issued by the store owner with `margincal keys create`, not "
                        "through the service (an admin must not be able to mint an approver)")
    key_id = secrets.token_hex(6)
    if name is None or name == "":
        name = f"{role}-{key_id}"
    name = " ".join(str(name).split())
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"key name {name[:70]!r} is invalid: 1-64 characters, letters, digits, space, '.', '_', '@', '-', "
            "starting with a letter or digit"
        )
    norm = normalize_name(name)
    if norm in RESERVED_NAMES:
        raise ConfigError(f"key name {name!r} is reserved for a system actor; choose the holder's own name")
    secret = secrets.token_urlsafe(32)
    with transaction(con):
        taken = con.execute("SELECT key_id, name FROM api_keys WHERE name_norm = ? OR lower(trim(name)) = ? "
                            "LIMIT 1", [norm, norm]).fetchone()
        if taken is not None:
            raise ConfigError(f"a key named {taken[1]!r} already exists (key {taken[0]}); names are identities and "
                              "unique: its holder rotates it with `margincal keys rotate --key KEY`")
        con.execute(
            "INSERT INTO api_keys (key_id, key_hash, role, name, created_at, revoked_at, created_by, name_norm) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
            [key_id, hash_secret(secret), role, name, utcnow(), actor, norm],
        )
        audit.append(con, actor, "key_create", f"api_key:{key_id}", {"role": role, "name": name})
    return NewKey(key_id=key_id, key=f"{KEY_PREFIX}_{key_id}_{secret}", role=role, name=name)


def rotate_key(con: duckdb.DuckDBPyConnection, key: str) -> NewKey:
    """The holder of an active ``key`` replaces it: a new secret for the same name and role, the old key
    revoked, in one transaction (audited with the holder as actor)."""
    who = authenticate(con, key)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with transaction(con):
        con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", [utcnow(), who.key_id])
        con.execute(
            "INSERT INTO api_keys (key_id, key_hash, role, name, created_at, revoked_at, created_by, name_norm) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
            [key_id, hash_secret(secret), who.role, who.name, utcnow(), who.name, normalize_name(who.name)],
        )
        audit.append(con, who.name, "key_rotate", f"api_key:{key_id}", {"replaces": who.key_id, "role": who.role})
    return NewKey(key_id=key_id, key=f"{KEY_PREFIX}_{key_id}_{secret}", role=who.role, name=who.name)


def list_keys(con: duckdb.DuckDBPyConnection, include_revoked: bool = True) -> list[dict[str, Any]]:
    """Every key's id, role, name, creation and revocation time (never the hash)."""
    sql = "SELECT key_id, role, name, created_at, revoked_at FROM api_keys"
    if not include_revoked:
        sql += " WHERE revoked_at IS NULL"
    rows = con.execute(sql + " ORDER BY created_at, key_id").fetchall()
    return [
        {"key_id": r[0], "role": r[1], "name": r[2],
         "created_at": r[3].isoformat() + "Z" if r[3] is not None else None,
         "revoked_at": r[4].isoformat() + "Z" if r[4] is not None else None,
         "active": r[4] is None}
        for r in rows
    ]


def revoke_key(con: duckdb.DuckDBPyConnection, key_id: str, *, actor: str = "cli") -> dict[str, Any]:
    """Mark a key revoked (kept for the record); revoking twice is an error naming the first time."""
    with transaction(con):
        row = con.execute("SELECT revoked_at FROM api_keys WHERE key_id = ?", [key_id]).fetchone()
        if row is None:
            raise ConfigError(f"key {key_id!r} does not exist; `margincal keys list` shows the ids")
        if row[0] is not None:
            raise ConfigError(f"key {key_id!r} was already revoked at {row[0].isoformat()}Z")
        con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", [utcnow(), key_id])
        audit.append(con, actor, "key_revoke", f"api_key:{key_id}", {})
    return next(k for k in list_keys(con) if k["key_id"] == key_id)


def authenticate(con: duckdb.DuckDBPyConnection, key: str | None) -> Principal:
    """Return the :class:`Principal` of an active key; :class:`AuthError` otherwise (same message for
    every failure, so a caller cannot tell a wrong secret from an unknown or revoked key)."""
    if not key:
        raise AuthError("missing API key: send it in the X-API-Key header (or Authorization: Bearer)")
    parsed = parse_key(key)
    key_id, secret = parsed if parsed else ("", key)
    row = con.execute(
        "SELECT key_hash, role, name, revoked_at FROM api_keys WHERE key_id = ?", [key_id]
    ).fetchone() if parsed else None
    stored = row[0] if row is not None else None
    ok = verify_secret(secret, stored if stored else f"hmac-sha256${_DUMMY_SALT.hex()}${_DUMMY_HASH}")
    if not ok or row is None or row[3] is not None or row[1] not in PERMISSIONS:
        raise AuthError("invalid or revoked API key")
    return Principal(key_id=key_id, role=row[1], name=row[2] or f"key:{key_id}")


class PrincipalCache:
    """Verified keys of this process: sha256(key) -> Principal, so a request needs no store read.

    Only successful checks are cached (bounded, ``max_size``). The cache is emptied when the store
    connection is reopened (``generation`` changes: another process may have written the file in
    between) and by :meth:`clear` after a key is created or revoked through the service; while the
    service holds the store open no other process can write it, so nothing else can revoke a key
    behind its back. ``ttl`` (seconds) bounds the age of an entry anyway.
    """

    def __init__(self, ttl: float = 30.0, max_size: int = 1024):
        import threading

        self.ttl = ttl
        self.max_size = max_size
        self._d: dict[bytes, tuple[Principal, int, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _k(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str, generation: int) -> Principal | None:
        import time

        with self._lock:
            hit = self._d.get(self._k(key))
        if hit is None or hit[1] != generation or time.monotonic() - hit[2] > self.ttl:
            return None
        return hit[0]

    def put(self, key: str, generation: int, principal: Principal) -> None:
        import time

        with self._lock:
            if len(self._d) >= self.max_size:
                self._d.clear()
            self._d[self._k(key)] = (principal, generation, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
