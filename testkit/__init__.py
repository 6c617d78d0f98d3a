"""Support code shared by the tests and the benchmarks (never imported by Pantau itself).

services: Pantau stages as subprocesses (start, signal, kill, stop, logs) and what the
fault tests read back; mqtt: publishers that count acknowledgements and collectors;
payloads: native and malformed payload builders; truth: the scenario oracle the rules
tests judge the engine against.
"""
