#!/bin/bash
# Run once by the influxdb:2 image after its setup (docker-entrypoint-initdb.d), with
# the CLI already holding the admin token: map the bucket to a v1 database/retention
# policy (DBRP), so InfluxQL (Pantau's reads, Grafana's InfluxQL datasource) finds it
# under the bucket's name.
set -euo pipefail
bucket="${DOCKER_INFLUXDB_INIT_BUCKET}"
bucket_id="$(influx bucket list --name "${bucket}" --hide-headers | cut -f1)"
influx v1 dbrp create --db "${bucket}" --rp autogen --bucket-id "${bucket_id}" --default
