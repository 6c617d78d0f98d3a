"""What one rules process has done, counted as it goes (rules.metrics exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RulesStats:
    messages: int = 0  # processed and acknowledged
    readings: int = 0
    rejected: int = 0  # messages or readings ingest dead-letters
    changes: int = 0
    opened: int = 0
    events_published: int = 0
    alerts_published: int = 0
    escalations_published: int = 0
    escalations: int = 0  # escalation levels raised by this process
    reloads: int = 0
    reload_errors: int = 0
    rebuilt_readings: int = 0
    late: int = 0  # readings behind their kecamatan's event time, judged (rules.engine)
    too_old: int = 0  # past the horizon: reported as data_quality, not judged
    stale: int = 0  # behind their own series: reported as data_quality
    sources_idle: int = 0  # sources no longer holding their kecamatan back
    uplink_gaps: int = 0  # seq gaps found (rules.gaps); missing uplinks in them:
    uplinks_missing: int = 0
    uplink_gaps_filled: int = 0  # seen, then filled by late copies within the settle time
    uplink_gaps_unsettled: int = 0  # seen, settle time not over yet
    # Missing uplinks read back from InfluxDB at the settle time (ingest had them) and
    # judged as late readings; gaps all of whose missing uplinks were found there.
    uplinks_repaired: int = 0
    uplink_gaps_repaired: int = 0
    alerts_by_crew: dict[str, int] = field(default_factory=dict)
