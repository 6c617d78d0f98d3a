"""The peer for bench.ingest: a Node-RED flow, MQTT in -> InfluxDB out.

Wired the way a city engineer typically does it with the usual nodes: `mqtt in` (QoS 1,
parsed JSON, MQTT v5, persistent session) -> a `function` node that turns Pantau's native
payload into one message per reading -> `influxdb out` (node-red-contrib-influxdb, v1
API, ms precision), which writes each message as it comes. Node-RED acknowledges a
message when it arrives, not after the write: that is how its MQTT node works.

Versions are pinned in bench/nodered/package.json and package-lock.json; `npm ci`
installs them into bench/nodered/node_modules on first use (about a minute).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = HERE / "node_modules" / ".bin" / "node-red"

FUNCTION = """\
// One point per reading: measurement = metric, tag device, the device's time.
const p = msg.payload;
const t = new Date(p.time);
return [p.readings.map(r => ({
    measurement: r.metric,
    payload: [{value: r.value, time: t}, {device: p.device}],
}))];
"""


def ensure_installed() -> Path:
    """node-red from the lock file; the path of its launcher."""
    if not BIN.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True
        )
    return BIN


def nodered_flow(
    *, root: str, mqtt_port: int, influx_port: int, database: str
) -> list[dict[str, Any]]:
    return [
        {"id": "tab", "type": "tab", "label": "pantau peer"},
        {
            "id": "broker",
            "type": "mqtt-broker",
            "broker": "127.0.0.1",
            "port": str(mqtt_port),
            "clientid": f"nodered-{root}",
            "protocolVersion": "5",
            "cleansession": False,
            "sessionExpiry": "3600",
            "keepalive": "60",
            "autoConnect": True,
            "usetls": False,
        },
        {
            "id": "influx",
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx_port),
            "protocol": "http",
            "database": database,
            "influxdbVersion": "1.x",
            "usetls": False,
        },
        {
            "id": "in",
            "type": "mqtt in",
            "z": "tab",
            "topic": f"{root}/sensors/+/up",
            "qos": "1",
            "datatype": "json",
            "broker": "broker",
            "nl": False,
            "rap": False,
            "inputs": 0,
            "wires": [["fn"]],
        },
        {
            "id": "fn",
            "type": "function",
            "z": "tab",
            "func": FUNCTION,
            "outputs": 1,
            "wires": [["out"]],
        },
        {
            "id": "out",
            "type": "influxdb out",
            "z": "tab",
            "influxdb": "influx",
            "measurement": "",
            "precision": "ms",
            "retentionPolicy": "",
            "wires": [],
        },
    ]


class NodeRed:
    """One Node-RED process with its own user dir, flow file and HTTP port."""

    def __init__(self, work: Path, port: int, flows: list[dict[str, Any]]) -> None:
        self.user_dir = work
        self.port = port
        self.flows = flows
        self.log = work / "node-red.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        launcher = ensure_installed()
        self.user_dir.mkdir(parents=True, exist_ok=True)
        (self.user_dir / "flows.json").write_text(json.dumps(self.flows, indent=1))
        # No editor, no telemetry prompt: a headless runtime like a deployed flow.
        (self.user_dir / "settings.js").write_text(
            "module.exports = {flowFile: 'flows.json', httpAdminRoot: false,"
            " logging: {console: {level: 'warn'}}, diagnostics: {enabled: false},"
            " telemetry: {enabled: false}};\n"
        )
        with self.log.open("ab") as sink:
            self._proc = subprocess.Popen(
                [str(launcher), "-u", str(self.user_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_RED_ENABLE_PROJECTS": "false"},
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
