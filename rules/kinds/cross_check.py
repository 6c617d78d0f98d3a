"""`cross_check`: a flood camera against the station its registry entry names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, ConditionState
from pantau.readings import Reading
from rules.cameras import CameraDevice
from rules.kinds.base import EVALUATORS, Evaluator, S, minutes
from rules.kinds.rechecks import Rechecks
from rules.rulespec import (
    CrossCheckRule,
    Rule,
)
from rules.state import Debounce, worst


def hold_text(delta: timedelta) -> str:
    return f"{delta.total_seconds():g} s" if delta < timedelta(minutes=1) else minutes(delta)


@EVALUATORS.register("cross_check")
class CrossCheckEvaluator(Evaluator):
    """Each camera of the rule's kinds against the station its registry entry names.

    The pair's hold machine is judged at each reading of either side on both sides'
    latest readings, while both are younger than `max_age`; the station's level less
    the camera's `station_offset_cm`, clipped to what the gauge can show (0 .. its top
    mark), is the depth the camera should read. A pair whose side went silent cannot be
    judged: an open one turns no_data when the older reading expires, a closed one
    stays closed (the absence rule reports the silence). The zone (the camera's) takes
    its most alarming pair. A watermark kind: it compares two devices' series."""

    rule: CrossCheckRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, CrossCheckRule)
        super().__init__(rule, city)
        self.pairs: dict[str, CameraDevice] = {}
        for d in list(self.devices.values()):
            if isinstance(d, CameraDevice) and d.station in city.devices:
                self.pairs[d.id] = d
            else:
                del self.devices[d.id]
        self.zone_members = {}
        for cid, cam in self.pairs.items():
            self.zone_members.setdefault(self.zone(cam), []).append(cid)
        self.cameras_of: dict[str, list[str]] = {}  # station -> its cameras
        for cid, cam in self.pairs.items():
            assert cam.station is not None
            self.cameras_of.setdefault(cam.station, []).append(cid)
            self.devices[cam.station] = city.devices[cam.station]
        self.metrics = frozenset({rule.metric, rule.against})
        self.latest: dict[str, tuple[datetime, float]] = {}  # device -> its side's latest
        self.debounces: dict[str, Debounce] = {}  # camera -> its pair's hold machine
        self.judged: dict[str, tuple[float, float, float]] = {}  # camera, station, expected
        self.rechecks = Rechecks()
        self.clear = rule.clear if rule.clear is not None else rule.tolerance

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        rule = self.rule
        if device.id in self.pairs and reading.metric == rule.metric:
            cameras = [device.id]
        elif device.id in self.cameras_of and reading.metric == rule.against:
            cameras = self.cameras_of[device.id]
        else:
            return []
        seen = self.latest.get(device.id)
        if seen is not None and reading.time <= seen[0]:
            return []
        self.latest[device.id] = (reading.time, reading.value)
        out: list[ConditionChange] = []
        for cid in cameras:
            out += self._judge(cid, reading.time)
        return out

    def _fresh(self, device_id: str, now: datetime) -> tuple[datetime, float] | None:
        seen = self.latest.get(device_id)
        return seen if seen is not None and now - seen[0] < self.rule.max_age else None

    def _judge(self, camera_id: str, now: datetime) -> list[ConditionChange]:
        cam = self.pairs[camera_id]
        assert cam.station is not None
        debounce = self.debounces.get(camera_id)
        if debounce is None:
            debounce = self.debounces[camera_id] = Debounce(
                self.rule.raise_for, self.rule.clear_for
            )
        mine, theirs = self._fresh(camera_id, now), self._fresh(cam.station, now)
        self.rechecks.cancel(camera_id)
        if mine is None or theirs is None:
            if debounce.state in (S.CLEARED, S.NO_DATA):
                return []
            debounce.force(S.NO_DATA, now)
            silent = camera_id if mine is None else cam.station
            return self._settle(
                camera_id, now, f"no fresh reading from {silent}: cannot cross-check {camera_id}"
            )
        expected = theirs[1] - cam.station_offset_cm
        expected = max(
            0.0, expected if cam.gauge_top_cm is None else min(expected, cam.gauge_top_cm)
        )
        diff = abs(mine[1] - expected)
        self.judged[camera_id] = (mine[1], theirs[1], expected)
        state = debounce.update(
            now, breaching=diff > self.rule.tolerance, clearing=diff <= self.clear
        )
        if state not in (S.CLEARED, S.NO_DATA):
            self.rechecks.schedule(camera_id, min(mine[0], theirs[0]) + self.rule.max_age)
        return self._settle(camera_id, now, lambda: self._reason(camera_id, diff, state))

    def _reason(self, camera_id: str, diff: float, state: ConditionState) -> str:
        rule, cam = self.rule, self.pairs[camera_id]
        depth, level, expected = self.judged[camera_id]
        du, lu = self.units.get(rule.metric, ""), self.units.get(rule.against, "")
        if state in (S.CLEARED, S.RECOVERING):
            verdict = f"differ by {diff:.1f} {du} <= clear {self.clear:g} {du}"
        else:
            verdict = (
                f"differ by {diff:.1f} {du} > tolerance {rule.tolerance:g} {du}"
                f" (hold {hold_text(rule.raise_for)})"
            )
        offset = f" - offset {cam.station_offset_cm:g}" if cam.station_offset_cm else ""
        return (
            f"{rule.metric} {depth:g} {du} at {camera_id} vs {rule.against} {level:g} {lu}"
            f" at {cam.station} (expected on the gauge: {level:g}{offset} -> {expected:g} {du}):"
            f" {verdict}"
        )

    def _settle(
        self, camera_id: str, at: datetime, reason: str | Callable[[], str]
    ) -> list[ConditionChange]:
        zone = self.zone(self.pairs[camera_id])
        members = [m for m in self.zone_members[zone] if m in self.debounces]
        state = worst([self.debounces[m].state for m in members])
        involved: list[str] = []
        for m in members:
            if self.debounces[m].state is not S.CLEARED:
                station = self.pairs[m].station
                involved += [m] if station is None else [m, station]
        value = None
        if self.debounces[camera_id].state not in (S.CLEARED, S.NO_DATA):
            value = self.judged[camera_id][0]
        tracker = self.tracker(zone, self.rule.metric)
        change = tracker.settle(
            at, state, self.rule.severity, devices=tuple(involved), value=value, reason=reason
        )
        return [] if change is None else [change]

    def next_deadline(self) -> datetime | None:
        return self.rechecks.next()

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        for when, camera_id in self.rechecks.due(at):
            out += self._judge(camera_id, when)
        return out
