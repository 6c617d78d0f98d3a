"""`python -m bench.fuzz [--runs N] [--seed S]`: coverage-guided fuzzing of the device
decoders with atheris (libFuzzer, bundled in atheris's manylinux wheel for CPython
3.11; no clang needed), a bounded number of inputs.

Each input's first byte picks a content type (none, native JSON, SenML) and the rest is
the payload, which goes through ingest's whole per-message path (ingest.pipeline: topic,
size limit, decoding, validation, line protocol) as in tests/unit/test_decoder_fuzz.py
(hypothesis, in CI): the answer is lines or rejections with a reason and a detail,
never an exception. A crash stops the run and libFuzzer writes the input to
`crash-<sha1>` in the current directory; the exit code is then non-zero.

The seed corpus is a handful of valid native and SenML payloads, so the fuzzer starts
inside the formats instead of guessing JSON from nothing. This is not part of the test
command (a bounded libFuzzer run is minutes of CPU, and its inputs depend on coverage
feedback, so it is not a repeatable test): run it after changing pantau/decoding.py,
pantau/validation.py or ingest/pipeline.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import atheris  # type: ignore[import-untyped]  # ships no types

with atheris.instrument_imports():
    from ingest.pipeline import Pipeline
    from pantau.city import load_city
    from pantau.settings import IngestSettings
    from pantau.topics import Topics
    from pantau.wire import (
        NATIVE_CONTENT_TYPE,
        SENML_CONTENT_TYPE,
        Sample,
        encode_native,
        encode_senml,
    )

CITY = load_city()
TOPICS = Topics("fuzz")
DEVICE = min(d.id for d in CITY.devices.values() if "rssi" in d.metrics)
NOW = datetime(2026, 11, 28, tzinfo=UTC)
PIPELINE = Pipeline(CITY, TOPICS, IngestSettings(rate_limit_factor=0))
CONTENT_TYPES: tuple[str | None, ...] = (None, NATIVE_CONTENT_TYPE, SENML_CONTENT_TYPE)


def one_input(data: bytes) -> None:
    if not data:
        return
    # The first byte picks the content type, the rest is the payload as it came.
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    payload = data[1:]
    outcome = PIPELINE.handle(TOPICS.sensor_up(DEVICE), payload, content_type, NOW)
    for rejection in outcome.rejections:
        if not (rejection.reason and rejection.detail):
            raise AssertionError(f"a rejection without reason or detail: {rejection}")
    for line in outcome.lines:
        if not line.startswith("rssi,"):
            raise AssertionError(f"a line of another measurement: {line}")


def seed_corpus(directory: Path) -> None:
    when = datetime(2026, 11, 27, 23, tzinfo=UTC)
    samples = [Sample("rssi", -70.0, "dBm")]
    seeds = {
        "native": b"\x00" + encode_native(DEVICE, 7, when, samples),
        "native_typed": b"\x01" + encode_native(DEVICE, None, when, samples),
        "senml": b"\x02" + encode_senml(DEVICE, when, samples),
    }
    for name, body in seeds.items():
        (directory / name).write_bytes(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--runs", type=int, default=200_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--max-len", type=int, default=4096, help="longest input, bytes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pantau-fuzz-") as corpus:
        seed_corpus(Path(corpus))
        atheris.Setup(
            [
                sys.argv[0],
                f"-runs={args.runs}",
                f"-seed={args.seed}",
                f"-max_len={args.max_len}",
                "-print_final_stats=1",
                corpus,
            ],
            one_input,
        )
        atheris.Fuzz()  # exits the process when the runs are done (or on a crash)
    return 0


if __name__ == "__main__":
    sys.exit(main())
