"""The per-device budget counts device time, so replays pass and floods do not."""

from __future__ import annotations

from ingest.ratelimit import DeviceRateLimiter


def test_a_flood_of_current_readings_is_shed_after_the_budget() -> None:
    limiter = DeviceRateLimiter({"noisy": 60.0, "calm": 60.0}, factor=10)
    now = 1_800_000_000.0
    allowed = [limiter.allow("noisy", now + i * 0.002) for i in range(500)]
    assert sum(allowed) == 10 and all(allowed[:10])
    assert limiter.allow("calm", now)  # each device has its own budget
    assert "10 messages per 60 s" in limiter.limit("noisy")


def test_a_fast_replay_of_spaced_readings_passes() -> None:
    limiter = DeviceRateLimiter({"d": 60.0}, factor=2)
    start = 1_700_000_000.0
    # a day of one reading a minute, interleaved with live readings: all within budget
    assert all(limiter.allow("d", start + 60 * i) for i in range(1440))
    assert limiter.allow("d", 1_800_000_000.0)


def test_factor_zero_and_unknown_devices_are_not_limited() -> None:
    off = DeviceRateLimiter({"d": 60.0}, factor=0)
    assert all(off.allow("d", 0.0) for _ in range(1000))
    on = DeviceRateLimiter({"d": 60.0}, factor=1)
    assert all(on.allow("other", 0.0) for _ in range(10))
