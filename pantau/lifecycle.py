"""How every `pantau <stage>` process runs: start, wait for SIGTERM / SIGINT, stop.

One helper, so every stage stops the same way: the handlers are in place before the
service starts (a signal during start-up still stops it), the signal is logged, and
SIGHUP means "reload" wherever a stage supports it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def stop_on_signals(on_hup: Callable[[], None] | None = None) -> threading.Event:
    """An event that SIGTERM or SIGINT sets from now on (SIGHUP calls `on_hup`)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if on_hup is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: on_hup())
    return stop


def run_until_signalled(
    service: Service,
    *,
    started: Callable[[], None] = lambda: None,
    on_hup: Callable[[], None] | None = None,
) -> None:
    """Start `service`, call `started` (its log line), wait for a signal, stop it."""
    stop = stop_on_signals(on_hup)
    service.start()
    try:
        started()
        stop.wait()
    finally:
        service.stop()
