"""Real local services for the demo, tests and benchmarks.

`LocalStack` starts its own `mosquitto` and `influxd` on free 127.0.0.1 ports with
generated configs and data under a run directory; it never uses a system broker or
database that may already run on the default ports.
"""

from pantau.local.errors import ServiceError
from pantau.local.stack import LocalStack

__all__ = ["LocalStack", "ServiceError"]
