"""Users and API keys in SQL: create them, and turn credentials into a Principal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pantau.clock import Clock
from pantau.store.api_tables import ApiKeyRow, UserRow

from .principal import Principal, Role
from .security import Passwords, api_key_digest, new_api_key


class AccountError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UserSession:
    """A user as the database has them now: what a token must still match."""

    principal: Principal
    version: int


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # update_user: leave this field as it is
Keep = Literal[_Keep.KEEP]


def _zones_text(kecamatan: Iterable[str] | None) -> str:
    return "" if kecamatan is None else ",".join(sorted(set(kecamatan)))


def _zones_of(text: str) -> frozenset[str] | None:
    return frozenset(text.split(",")) if text else None


class Accounts:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, passwords: Passwords) -> None:
        self._sessions = sessions
        self._clock = clock
        self._passwords = passwords

    def create_user(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        agency: str | None = None,
        kecamatan: Iterable[str] | None = None,
        crew_id: str | None = None,
    ) -> Principal:
        if role is Role.SERVICE:
            raise AccountError("services use API keys, not passwords")
        if role is Role.CREW and (agency is None or not kecamatan or crew_id is None):
            raise AccountError("a crew user needs an agency, its kecamatan and a crew id")
        if len(password) < 10:
            raise AccountError("passwords need at least 10 characters")
        row = UserRow(
            username=username,
            password_hash=self._passwords.hash(password),
            role=role.value,
            agency=agency,
            crew_id=crew_id,
            zones=_zones_text(kecamatan),
            active=True,
            created_at=self._clock.now(),
        )
        try:
            with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError as err:
            raise AccountError(f"user {username!r} exists") from err
        return _user_principal(row)

    def authenticate(self, username: str, password: str) -> UserSession | None:
        with self._sessions() as session:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username, UserRow.active.is_(True))
            ).one_or_none()
        if not self._passwords.verify(password, None if row is None else row.password_hash):
            return None
        assert row is not None
        return UserSession(_user_principal(row), row.session_version)

    def session_of(self, username: str) -> UserSession | None:
        """The user's current principal and session version; None if unknown or inactive."""
        with self._sessions() as session:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username, UserRow.active.is_(True))
            ).one_or_none()
            return None if row is None else UserSession(_user_principal(row), row.session_version)

    def update_user(
        self,
        username: str,
        *,
        role: Role | None = None,
        agency: str | Keep | None = KEEP,
        kecamatan: Iterable[str] | Keep | None = KEEP,
        crew_id: str | Keep | None = KEEP,
        active: bool | None = None,
    ) -> None:
        """Change a user; every token issued before stops working (the session version
        is raised), within `api.session_check_s` on every process."""
        with self._sessions() as session, session.begin():
            row = session.scalars(select(UserRow).where(UserRow.username == username)).one_or_none()
            if row is None:
                raise AccountError(f"no user {username!r}")
            if role is not None:
                if role is Role.SERVICE:
                    raise AccountError("services use API keys, not passwords")
                row.role = role.value
            if agency is not KEEP:
                row.agency = agency
            if kecamatan is not KEEP:
                row.zones = _zones_text(kecamatan)
            if crew_id is not KEEP:
                row.crew_id = crew_id
            if active is not None:
                row.active = active
            if row.role == Role.CREW.value and not (row.agency and row.zones and row.crew_id):
                raise AccountError("a crew user needs an agency, its kecamatan and a crew id")
            row.session_version += 1

    def revoke_sessions(self, username: str) -> None:
        """Log the user out everywhere (a lost phone): every token issued so far stops."""
        self.update_user(username)

    def create_api_key(
        self,
        name: str,
        *,
        agency: str | None = None,
        kecamatan: Iterable[str] | None = None,
    ) -> str:
        """A new read-only service key; the key is shown once, only its hash is kept."""
        key = new_api_key()
        row = ApiKeyRow(
            name=name,
            prefix=key[:10],
            key_sha256=api_key_digest(key),
            role=Role.SERVICE.value,
            agency=agency,
            zones=_zones_text(kecamatan),
            created_at=self._clock.now(),
        )
        try:
            with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError as err:
            raise AccountError(f"API key {name!r} exists") from err
        return key

    def principal_for_key(self, key: str) -> Principal | None:
        with self._sessions() as session:
            row = session.scalars(
                select(ApiKeyRow).where(
                    ApiKeyRow.key_sha256 == api_key_digest(key), ApiKeyRow.revoked_at.is_(None)
                )
            ).one_or_none()
        if row is None:
            return None
        return Principal(
            subject=f"key:{row.name}",
            role=Role(row.role),
            agency=row.agency,
            kecamatan=_zones_of(row.zones),
        )


def _user_principal(row: UserRow) -> Principal:
    return Principal(
        subject=row.username,
        role=Role(row.role),
        agency=row.agency,
        kecamatan=_zones_of(row.zones),
        crew_id=row.crew_id,
    )
