"""The demo: the whole pipeline on a storm scenario, with simulated crews and e-Kinerja.

It wires every stage together (ingest, rules, the API and the simulators), so it lives
outside them; `pantau demo` runs `demo.run`. Tests import `play` and the crews from here.
"""
