"""The template variables every Pantau dashboard offers: kecamatan, kelurahan, agency.

Values come from InfluxDB tag values (the ids readings carry, the same ids incidents use
in SQL), so a new kelurahan or agency appears without rebuilding the dashboards.
"""

from __future__ import annotations

from dashboards.model import Variable

KECAMATAN = Variable(
    name="kecamatan", label="Kecamatan", query='SHOW TAG VALUES WITH KEY = "kecamatan"'
)
KELURAHAN = Variable(
    name="kelurahan",
    label="Kelurahan",
    query='SHOW TAG VALUES WITH KEY = "kelurahan" WHERE "kecamatan" =~ /^$kecamatan$/',
)
AGENCY = Variable(name="agency", label="Agency", query='SHOW TAG VALUES WITH KEY = "agency"')

ZONE_VARIABLES = (KECAMATAN, KELURAHAN, AGENCY)
