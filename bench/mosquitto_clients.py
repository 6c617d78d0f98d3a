"""mosquitto_pub / mosquitto_sub as load generators and counters for benchmarks.

The C clients keep the publishing side cheap and outside Python, so a benchmark
measures the broker and the consumer, not the load generator.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pantau.local import LocalStack

# mosquitto_pub 2.0.x in -l mode disconnects when the PUBACK of the *last* mid arrives,
# and mids are 16-bit: past 65,535 lines an early message with the same mid ends the
# run and the rest of stdin is silently dropped. So no publisher gets more lines.
PUBLISHER_MAX_LINES = 50_000


@dataclass(frozen=True, slots=True)
class PublishJob:
    """One mosquitto_pub process: every line of `lines` becomes a message on `topic`."""

    topic: str
    lines: Path
    count: int  # messages
    readings: int  # what the messages carry (a SenML pack holds many)


def write_lines(path: Path, payloads: Iterator[bytes]) -> int:
    count = 0
    with path.open("wb") as f:
        for payload in payloads:
            if b"\n" in payload:
                raise ValueError("mosquitto_pub -l sends one message per line")
            f.write(payload + b"\n")
            count += 1
    if count > PUBLISHER_MAX_LINES:
        raise ValueError(f"{path}: {count} lines, mosquitto_pub -l drops past 65,535")
    return count


def mqtt_args(stack: LocalStack, topic: str) -> list[str]:
    return ["-h", stack.mqtt_host, "-p", str(stack.mqtt_port), "-V", "5", "-q", "1", "-t", topic]


def run_publishers(
    stack: LocalStack, jobs: Sequence[PublishJob], extra: Sequence[str] = ()
) -> float:
    """Start one `mosquitto_pub -l` per job at once; seconds until the last one exited.

    mosquitto_pub exits after the PUBACK of its last message, so the broker holds every
    message by then."""
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    for job in jobs:
        with job.lines.open("rb") as stdin:
            procs.append(
                subprocess.Popen(
                    ["mosquitto_pub", *mqtt_args(stack, job.topic), "-l", *extra],
                    stdin=stdin,
                    stderr=subprocess.PIPE,
                )
            )
    failures = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"exit {proc.returncode}: {err.decode(errors='replace')[-300:]}")
    if failures:
        raise RuntimeError(f"mosquitto_pub failed: {failures[:3]}")
    return time.monotonic() - started


@contextmanager
def subscriber(
    stack: LocalStack, topic_filter: str, count: int, out: Path, timeout_s: float
) -> Iterator[Callable[[], int]]:
    """`mosquitto_sub -C count+1` on `topic_filter`, already subscribed on entry.

    Readiness: a retained probe is published first and the subscriber's first output
    line is that probe, so once `out` is non-empty the subscription is in place (and
    -C counts the probe, hence +1). Yields a function that waits up to `timeout_s` for
    the subscriber to exit and returns how many non-probe messages it printed."""
    probe_topic = topic_filter.replace("+", "probe").removesuffix("#") or "probe"
    subprocess.run(
        ["mosquitto_pub", *mqtt_args(stack, probe_topic), "-r", "-m", "probe"], check=True
    )
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["mosquitto_sub", *mqtt_args(stack, topic_filter), "-C", str(count + 1)],
            stdout=sink,
        )
    try:
        deadline = time.monotonic() + 10
        while out.stat().st_size == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mosquitto_sub did not receive the retained probe")
            time.sleep(0.005)

        def wait_received() -> int:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with out.open("rb") as f:
                return sum(1 for _ in f) - 1

        yield wait_received
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # Clear the retained probe so later subscribers on the filter do not see it.
        subprocess.run(["mosquitto_pub", *mqtt_args(stack, probe_topic), "-r", "-n"], check=False)
