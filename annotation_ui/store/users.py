"""Users: accounts, roles, passwords, login checks and each user's UI language."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .auth import dummy_hash, hash_password, verify_password
from .engine import Database
from .errors import AccessError, StoreError
from .schema import ROLES, Assignment, User, WriteAssignment

USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
UI_LANGS = ("en", "zh")


def active_user(s: Session, name: str | None) -> User:
    """The active user called `name` in session `s`; AccessError when not logged in, unknown or disabled."""
    if not name:
        raise AccessError("not logged in")
    u = s.scalar(select(User).where(User.name == name))
    if u is None or not u.active:
        raise AccessError(f"user {name!r} is unknown or disabled")
    return u


class Users:
    def __init__(self, db: Database):
        self.db = db

    def add_user(self, name: str, role: str, password: str) -> int:
        """A new active user; StoreError for a bad name or role, or a name already taken."""
        name = (name or "").strip()
        if not USERNAME_RE.fullmatch(name):
            raise StoreError(f"user name must be 1-64 of the characters A-Z a-z 0-9 _ . @ -, got {name!r}")
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        pw_hash = hash_password(password)
        try:
            with self.db.write() as s:
                u = User(name=name, role=role, password_hash=pw_hash, active=True)
                s.add(u)
                s.flush()
                return u.id
        except IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def set_password(self, name: str, password: str) -> None:
        pw_hash = hash_password(password)
        with self.db.write() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise StoreError(f"no user named {name!r}")
            u.password_hash = pw_hash

    def set_active(self, name: str, active: bool) -> None:
        """Enable or disable a user; a disabled user's open leases (rank and write) return to the pool."""
        with self.db.write() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                raise StoreError(f"no user named {name!r}")
            u.active = active
            if not active:
                for table in (Assignment, WriteAssignment):
                    for a in s.scalars(select(table).where(table.user_id == u.id, table.status == "active")):
                        a.status = "expired"

    def list_users(self) -> list[dict]:
        with self.db.read() as s:
            return [
                {"name": u.name, "role": u.role, "active": u.active, "created_at": u.created_at.isoformat(timespec="seconds")}
                for u in s.scalars(select(User).order_by(User.name))
            ]

    def authenticate(self, name: str, password: str) -> bool:
        """True for an active user with this password. Costs one scrypt either way."""
        with self.db.read() as s:
            u = s.scalar(select(User).where(User.name == (name or "").strip()))
            stored = u.password_hash if u is not None else dummy_hash()
            ok = verify_password(password or "", stored)
            return bool(ok and u is not None and u.active)

    def user_info(self, name: str | None) -> dict:
        """{"name", "role", "ui_lang"} of an active user; AccessError otherwise."""
        with self.db.read() as s:
            u = active_user(s, name)
            return {"name": u.name, "role": u.role, "ui_lang": u.ui_lang}

    def set_ui_lang(self, name: str, lang: str) -> None:
        if lang not in UI_LANGS:
            raise StoreError(f"ui language must be 'en' or 'zh', got {lang!r}")
        with self.db.write() as s:
            active_user(s, name).ui_lang = lang

    def require_role(self, name: str | None, *roles: str) -> dict:
        """user_info of `name` if their role is one of `roles`; AccessError ("needs the role") otherwise."""
        info = self.user_info(name)
        if info["role"] not in roles:
            raise AccessError(f"this action needs the role {' or '.join(roles)}; {name!r} is {info['role']}")
        return info
