"""Simulators: a sensor fleet that behaves like the city's devices (config/devices.yaml).

The API (import from the modules; this package stays light to import):

* `simulators.scenario.load_scenario(path, city) -> Scenario` - a YAML scenario,
  checked against the city with file:line errors; `find_scenario(name_or_path)`.
* `simulators.messages.iter_messages(city, scenario, *, topics=None, start=None)
  -> Iterator[SimMessage]` - the whole message stream, no broker, deterministic.
* `simulators.publisher.run_scenario(city, scenario, mqtt, *, speed, stop=None,
  start=None, clock=None) -> SimReport` - the same stream over MQTT v5.

Modules: weather (storm cells), drainage (catchments, reservoirs, pumps, gates),
traffic (the commuter day), fleet (schedules and signals per device), faults
(signal faults and malformed payloads), messages (the stream), report, simclock,
publisher (gateways), placement (the synthetic device registry).
"""
