"""pantau/sparkplug_b_pb2.py is protoc's output for pantau/sparkplug_b.proto (eclipse/tahu's
schema, EPL-2.0), committed so that running Pantau needs only the `protobuf` runtime.
This test regenerates it with grpcio-tools (a dev dependency) and compares, so the
committed module cannot drift from the schema:

    cd pantau && uv run python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sparkplug_b.proto
"""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

from bridges.sparkplug_payload import INT8, INT16, INT64, UINT32, value_of
from pantau.sparkplug_b_pb2 import Payload

PANTAU = Path(__file__).resolve().parents[2] / "pantau"


def test_the_committed_module_is_protocs_output_for_the_schema(tmp_path: Path) -> None:
    shutil.copy(PANTAU / "sparkplug_b.proto", tmp_path)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main([*args, str(tmp_path / "sparkplug_b.proto")]) == 0
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_text() == (PANTAU / name).read_text(), name


def test_the_schema_keeps_its_license_header() -> None:
    head = (PANTAU / "sparkplug_b.proto").read_text().splitlines()[:8]
    assert "SPDX-License-Identifier: EPL-2.0" in "\n".join(head)
    assert "Cirrus Link Solutions" in head[0]


def test_a_payload_round_trips_with_aliases_and_seq() -> None:
    p = Payload(timestamp=1_795_809_600_000, seq=255)
    p.metrics.add(name="Sump/Level", alias=3, datatype=10, double_value=1.25)
    back = Payload.FromString(p.SerializeToString())
    (m,) = back.metrics
    assert (back.seq, m.name, m.alias, m.double_value) == (255, "Sump/Level", 3, 1.25)


def test_signed_datatypes_are_read_from_their_unsigned_fields() -> None:
    m = Payload.Metric(int_value=0xFFFB)
    assert value_of(m, INT16) == -5.0  # datatype from the birth
    assert value_of(Payload.Metric(int_value=0x80, datatype=INT8), None) == -128.0
    assert value_of(Payload.Metric(long_value=2**64 - 1, datatype=INT64), None) == -1.0
    assert value_of(Payload.Metric(int_value=2**32 - 1), UINT32) == float(2**32 - 1)
    assert value_of(Payload.Metric(is_null=True), INT8) is None
