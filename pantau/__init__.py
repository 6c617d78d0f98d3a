"""Pantau kernel: domain types, settings, topic scheme, clock and errors.

Every stage (ingest, vision, rules, api, dashboards, simulators) imports this
package; this package imports no stage.
"""
