"""Pantau's InfluxDB client: line protocol, the v1 and v2 writers and the InfluxQL reader.

Every stage that writes or reads InfluxDB (ingest, rules' gap and metric points, the
API's KPIs, dashboards' tests) uses this one package.
"""
