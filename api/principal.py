"""Who is calling and what they may see: roles, agency and zone scope.

A crew sees an incident only when it belongs to the crew's agency and lies in one of the
kecamatan the crew covers (a kelurahan through its kecamatan). Everything else about
the incident is then hidden: lists leave it out, and detail, stream and transitions
answer 404 as if it did not exist, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"  # command center: every incident, every transition
    SUPERVISOR = "supervisor"  # an agency's duty supervisor (or city-wide without agency)
    CREW = "crew"  # a field crew: its agency, its kecamatan
    AUDITOR = "auditor"  # reads everything including the audit log, changes nothing
    SERVICE = "service"  # an API key: read-only machine access


WRITE_ROLES = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.CREW})
AUDIT_READERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.AUDITOR})


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    subject: str  # username, or "key:<name>" for an API key
    role: Role
    agency: str | None = None  # None: every agency
    kecamatan: frozenset[str] | None = None  # None: the whole city
    crew_id: str | None = None

    @property
    def actor(self) -> str:
        """How the principal appears on timelines and in the audit log."""
        return f"{self.role.value}:{self.subject}"

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES

    def sees(self, agency: str | None, kecamatan: str | None) -> bool:
        """May this principal see an incident of `agency` in `kecamatan`?"""
        if self.agency is not None and agency != self.agency:
            return False
        return self.kecamatan is None or (kecamatan is not None and kecamatan in self.kecamatan)
