"""Units of the same quantity and their factors, shared by the edge (depth from a distance), the
simulators (signals given in another unit) and the cloud (rates such as mm/day, arcsec/day)."""

from __future__ import annotations

import math

LENGTH_UNITS_PER_METRE: dict[str, float] = {"m": 1.0, "cm": 100.0, "mm": 1000.0}
ANGLE_UNITS_PER_DEGREE: dict[str, float] = {"deg": 1.0, "arcsec": 3600.0, "mrad": 1000.0 * math.pi / 180.0}
UNIT_GROUPS: tuple[dict[str, float], ...] = (LENGTH_UNITS_PER_METRE, ANGLE_UNITS_PER_DEGREE)


def conversion(given: str, wanted: str) -> float | None:
    """Multiply a value in `given` by this to get `wanted`; 1 for the same unit, None if the two
    are not units of one quantity known here."""
    if given == wanted:
        return 1.0
    group = next((g for g in UNIT_GROUPS if given in g and wanted in g), None)
    return None if group is None else group[wanted] / group[given]
