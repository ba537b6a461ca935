"""Connection Secrets: what an app needs to reach its database or bucket.

The master password is generated here with a cryptographic generator, in a character set every
engine accepts without quoting (letters, digits, `-` and `_`), and it is stored in the Secret
**before** the cloud is asked to create anything, so a crash can never lose it. The Secret also
records, in annotations that hold no secret, whether the password is known to be set on the
instance (`password-state`) and which rotation request it answers (`rotation`).

Every key apps read (`password`, `uri`, ...) describes one credential, the one the instance
accepts. A rotation's new password waits under `pending-password` (stored before any cloud call
sets it, so a crash cannot lose it) until the cloud has applied it; then `password`, `uri` and
the rest switch to it in one write that also drops `pending-password`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from kumo.api import ANNOTATION_PASSWORD_DIGEST

PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_"
PASSWORD_LENGTH = 32

PASSWORD_PENDING = "pending"  # stored, not yet known to be set on the instance
PASSWORD_APPLIED = "applied"


URI_SCHEMES = {"postgres": "postgresql", "mysql": "mysql"}
DATABASE_KEYS = ("host", "port", "username", "password", "database", "engine", "uri")
BUCKET_KEYS = ("bucket", "region", "endpoint", "url")


def generate_password() -> str:
    # A letter first: some engines and tools dislike a leading digit or dash.
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH - 1))


def database_uri(engine: str, username: str, password: str, host: str, port: str, database: str) -> str:
    """A driver-ready URL with user and password percent-escaped."""
    scheme = URI_SCHEMES.get(engine, engine)
    path = f"/{quote(database, safe='')}" if database else ""
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}{path}"


def database_data(connection: Mapping[str, str], username: str, password: str) -> dict[str, str]:
    """The full Database Secret data from the provider's (non-secret) connection details."""
    engine = connection.get("engine", "")
    data = {k: str(v) for k, v in connection.items()}
    data.update({"username": connection.get("username") or username, "password": password, "engine": engine})
    data.setdefault("database", "")
    if data.get("host"):
        data["uri"] = database_uri(
            engine, data["username"], password, data["host"], data.get("port", ""), data["database"]
        )
    return data


@dataclass(frozen=True)
class StoredPassword:
    """The password as the Secret holds it, and what the controller knows about it."""

    value: str
    state: str
    rotation: str
    # Held under PENDING_PASSWORD_KEY, not yet published: apps still use the Secret's `password`.
    staged: bool = False

    @property
    def applied(self) -> bool:
        return self.state == PASSWORD_APPLIED


def password_digest(uid: str, password: str) -> str:
    """HMAC-SHA256 of the password keyed by the owner's uid: tells an edited Secret apart from
    kumo's own write without storing anything that helps guess the password elsewhere."""
    return hmac.new(uid.encode(), password.encode(), hashlib.sha256).hexdigest()[:32]


def edited(annotations: Mapping[str, str], uid: str, password: str) -> bool:
    """The Secret's password is not the one kumo wrote (a Secret written before digests were
    recorded counts as unedited: its digest is added by the next write)."""
    recorded = annotations.get(ANNOTATION_PASSWORD_DIGEST) or ""
    return bool(recorded) and not hmac.compare_digest(recorded, password_digest(uid, password))
