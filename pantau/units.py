"""SenML units (RFC 8428 section 12.1 and the secondary units of RFC 8798).

The catalogue may only name units from this registry, so a typo such as `mm/hr`
fails at config load instead of silently creating a new series.
"""

from __future__ import annotations

# RFC 8428 primary units (the subset with a use in city infrastructure is not enough:
# devices send what they send, so the whole registry is accepted as a *name*; the
# catalogue then says which ones a metric takes and how to convert them).
SENML_PRIMARY_UNITS: frozenset[str] = frozenset(
    [
        "m",
        "kg",
        "g",
        "s",
        "A",
        "K",
        "cd",
        "mol",
        "Hz",
        "rad",
        "sr",
        "N",
        "Pa",
        "J",
        "W",
        "C",
        "V",
        "F",
        "Ohm",
        "S",
        "Wb",
        "T",
        "H",
        "Cel",
        "lm",
        "lx",
        "Bq",
        "Gy",
        "Sv",
        "kat",
        "m2",
        "m3",
        "l",
        "m/s",
        "m/s2",
        "m3/s",
        "l/s",
        "W/m2",
        "cd/m2",
        "bit",
        "bit/s",
        "lat",
        "lon",
        "pH",
        "dB",
        "dBW",
        "Bspl",
        "count",
        "/",
        "%",
        "%RH",
        "%EL",
        "EL",
        "1/s",
        "1/min",
        "beat/min",
        "beats",
        "S/m",
        "B",
        "VA",
        "VAs",
        "var",
        "vars",
        "J/m",
        "kg/m3",
        "deg",
        "NTU",
    ]
)

# RFC 8798 secondary units: each is (primary unit, scale, offset).
SENML_SECONDARY_UNITS: dict[str, tuple[str, float, float]] = {
    "ms": ("s", 1 / 1000, 0),
    "min": ("s", 60, 0),
    "h": ("s", 3600, 0),
    "MHz": ("Hz", 1_000_000, 0),
    "kW": ("W", 1000, 0),
    "kWh": ("J", 3_600_000, 0),
    "mV": ("V", 1 / 1000, 0),
    "mA": ("A", 1 / 1000, 0),
    "dBm": ("dBW", 1, -30),
    "mm/h": ("m/s", 1 / 3_600_000, 0),
    "m/h": ("m/s", 1 / 3600, 0),
    "ppm": ("/", 1e-6, 0),
    "/100": ("/", 1 / 100, 0),
    "/1000": ("/", 1 / 1000, 0),
    "hPa": ("Pa", 100, 0),
    "mm": ("m", 1 / 1000, 0),
    "cm": ("m", 1 / 100, 0),
    "km": ("m", 1000, 0),
    "km/h": ("m/s", 1 / 3.6, 0),
    "mm/s": ("m/s", 1 / 1000, 0),
    "1/h": ("1/s", 1 / 3600, 0),
    "l/min": ("m3/s", 1 / 60000, 0),
}

SENML_UNITS: frozenset[str] = SENML_PRIMARY_UNITS | frozenset(SENML_SECONDARY_UNITS)


def is_senml_unit(unit: str) -> bool:
    return unit in SENML_UNITS
