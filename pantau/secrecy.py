"""Is a secret real? Placeholders from docs and examples must never reach production."""

from __future__ import annotations

import re

MIN_PRODUCTION_CHARS = 16
_PLACEHOLDER = re.compile(
    r"change|example|placeholder|secret|password|passw0rd|xxx|todo|default|dummy|test|admin",
    re.I,
)


def weakness(value: str) -> str | None:
    """Why `value` cannot be a production secret, or None if it can."""
    if len(value) < MIN_PRODUCTION_CHARS:
        return f"shorter than {MIN_PRODUCTION_CHARS} characters"
    if _PLACEHOLDER.search(value) and not _random_looking(value):
        return "looks like a placeholder (generate one: openssl rand -hex 32)"
    if len(set(value)) < 6:
        return "too few distinct characters"
    return None


def _random_looking(value: str) -> bool:
    """A long value mixing letter cases and digits was generated, not typed: a random
    token (e.g. `secrets.token_urlsafe(32)`) spells "xxx" or "test" somewhere about once
    in a few hundred, and must not be refused for it."""
    classes = sum(any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit))
    return len(value) >= 32 and classes == 3
