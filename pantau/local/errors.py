"""Errors of the local service launcher."""

from __future__ import annotations

from pantau.errors import PantauError


class ServiceError(PantauError):
    """A local service could not be started, did not become ready, or died.

    The message carries the tail of the service's log, so the cause is on screen.
    """
