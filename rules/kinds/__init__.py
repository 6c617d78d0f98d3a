"""Rule kinds: one evaluator class per `kind`, registered by name in a plain registry.

An evaluator watches a fixed set of devices, is fed their readings by the engine and
says, per dedup key (rule, zone, hazard), what the condition is. A *series-local* kind
(`series_local = True`: threshold, rate of change, flatline without peers) judges each
device on its own series alone, so the engine feeds it each series in order as readings
arrive; the others (absence, zone aggregate, composite, flatline with moving peers,
cross-check) get the fleet's readings in event-time order once the watermark passes
them. Kinds that wait for time to pass (absence, no data, a cross-check's stale side)
expose deadlines the engine fires once the watermark is past them; a series-local kind
also fires a device's own silence deadline when that device's next reading shows it
passed (`catch_up`). No evaluator reads a clock.

One module per kind; importing this package imports every kind by name, so the set of
kinds is visible here and a broken one fails at start-up.
"""

from rules.kinds import (  # noqa: F401 - each registers its kind
    absence,
    composite,
    cross_check,
    flatline,
    rate_of_change,
    threshold,
    zone_aggregate,
)
from rules.kinds.base import ANY_METRIC, EVALUATORS, Evaluator, build_evaluator

__all__ = ["ANY_METRIC", "EVALUATORS", "Evaluator", "build_evaluator"]
