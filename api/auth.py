"""Who is asking, and which firms they may see.

Accounts (``zayton.accounts``) have a role: ``district`` sees every firm, ``park`` the firms of
its park, ``firm`` itself. ``editor`` accounts may also write business data and budgets within
that scope. People sign in with the OAuth2 password flow (``POST /v1/auth/token``) and get a
signed access token (JWT, HS256, one hour); machines send an API key (``X-API-Key``). Every
query the API runs is given the caller's :class:`Principal` firm ids, so an object outside them
is simply not there (404) whatever the route.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["district", "park", "firm"]
TOKEN_LIFETIME = timedelta(hours=1)
KEY_PREFIX = "zk_"
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against; made on first sign-in, not at import (a hash
    costs ~0.1 s, and every ``zayton`` command imports this module)."""
    return _HASHER.hash("not a password of anyone")


class AuthError(ValueError):
    """An account that cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    editor: bool
    firm_ids: tuple[int, ...] | None
    """The firms this caller may see; None: all of them (district)."""
    park_id: int | None = None
    firm_id: int | None = None

    def sees(self, firm_id: int) -> bool:
        return self.firm_ids is None or firm_id in self.firm_ids


ANONYMOUS_DISTRICT = Principal("anonymous", "district", editor=False, firm_ids=None)
"""What an unauthenticated caller is when the API runs open (the local demo)."""


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthError("a password needs at least 8 characters")
    return _HASHER.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    """Constant work whether or not the account exists, so timing tells nothing."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def issue_token(secret: bytes, username: str, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims = {"sub": username, "iat": issued, "exp": issued + TOKEN_LIFETIME}
    return jwt.encode(claims, secret, algorithm="HS256")


def token_subject(secret: bytes, token: str) -> str | None:
    """The username a valid, unexpired token was issued to; None otherwise."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None


# --- the database side ---------------------------------------------------------------------------

_ACCOUNT = """
    SELECT a.username, a.role, a.editor, a.park_id, a.firm_id,
           CASE a.role
               WHEN 'district' THEN NULL
               WHEN 'park' THEN ARRAY(SELECT f.id FROM zayton.firms f WHERE f.park_id = a.park_id
                                      ORDER BY f.id)
               ELSE ARRAY[a.firm_id]
           END
    FROM zayton.accounts a
"""


def _principal(row: tuple[Any, ...]) -> Principal:
    firm_ids = None if row[5] is None else tuple(int(i) for i in row[5])
    return Principal(str(row[0]), row[1], bool(row[2]), firm_ids, row[3], row[4])


async def by_username(conn: psycopg.AsyncConnection[Any], username: str) -> Principal | None:
    cursor = await conn.execute(
        (_ACCOUNT + " WHERE a.username = %s AND a.active").encode(), (username,)
    )
    row = await cursor.fetchone()
    return None if row is None else _principal(row)


async def by_password(
    conn: psycopg.AsyncConnection[Any], username: str, password: str
) -> Principal | None:
    cursor = await conn.execute(
        "SELECT password_hash FROM zayton.accounts WHERE username = %s AND active", (username,)
    )
    row = await cursor.fetchone()
    if not password_matches(None if row is None else row[0], password):
        return None
    return await by_username(conn, username)


async def by_key(conn: psycopg.AsyncConnection[Any], key: str) -> Principal | None:
    cursor = await conn.execute(
        (
            _ACCOUNT
            + """ JOIN zayton.api_keys k ON k.account_id = a.id
                  WHERE k.digest = %s AND k.revoked_at IS NULL AND a.active"""
        ).encode(),
        (key_digest(key),),
    )
    row = await cursor.fetchone()
    return None if row is None else _principal(row)


async def signing_secret(conn: psycopg.AsyncConnection[Any]) -> bytes:
    """The database's token key, made on first use."""
    await conn.execute(
        "INSERT INTO zayton.api_secret (secret) VALUES (%s) ON CONFLICT DO NOTHING",
        (secrets.token_bytes(32),),
    )
    cursor = await conn.execute("SELECT secret FROM zayton.api_secret")
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - inserted just above
        raise AuthError("no signing secret")
    return bytes(row[0])


def create_account(
    conn: psycopg.Connection[Any],
    username: str,
    role: Role,
    *,
    password: str | None = None,
    park: str | None = None,
    firm: str | None = None,
    editor: bool = False,
) -> None:
    """Create or update an account (its scope is a park's or a firm's code)."""
    if (role == "park") != (park is not None) or (role == "firm") != (firm is not None):
        raise AuthError("a park account names its park, a firm account its firm, a district none")
    park_id = _id(conn, "parks", park) if park is not None else None
    firm_id = _id(conn, "firms", firm) if firm is not None else None
    digest = None if password is None else hash_password(password)
    try:
        conn.execute(
            """INSERT INTO zayton.accounts AS a
                   (username, password_hash, role, park_id, firm_id, editor)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (username) DO UPDATE SET
                   password_hash = coalesce(excluded.password_hash, a.password_hash),
                   role = excluded.role, park_id = excluded.park_id, firm_id = excluded.firm_id,
                   editor = excluded.editor, active = true""",
            (username, digest, role, park_id, firm_id, editor),
        )
    except psycopg.errors.CheckViolation as err:
        raise AuthError(f"username {username!r}: letters, digits and _ . @ - only") from err


def create_key(conn: psycopg.Connection[Any], username: str, name: str) -> str:
    """A new API key for an account; the key itself is returned once and never stored."""
    row = conn.execute("SELECT id FROM zayton.accounts WHERE username = %s", (username,)).fetchone()
    if row is None:
        raise AuthError(f"no account {username!r}")
    key = new_key()
    conn.execute(
        "INSERT INTO zayton.api_keys (account_id, name, digest) VALUES (%s, %s, %s)",
        (row[0], name, key_digest(key)),
    )
    return key


def _id(conn: psycopg.Connection[Any], table: str, code: str) -> int:
    row = conn.execute(
        f"SELECT id FROM zayton.{table} WHERE code = %s".encode(), (code,)
    ).fetchone()
    if row is None:
        raise AuthError(f"no {table[:-1]} {code!r} (import the registry first)")
    return int(row[0])
