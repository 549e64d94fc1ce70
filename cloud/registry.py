"""The registry of tenants, sites, gateways and sensors (file-based).

It is the authority for which gateway may report which sensor, where the sensor stands, its
physical range, and the alert thresholds of each measured kind.  See docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from wire import configfile, units
from wire.configfile import ConfigError
from wire.ids import Ident
from wire.telemetry import Quality, Reading


class Tenant(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    name: str
    timezone: str = "Asia/Tokyo"  # times in alert texts are shown in it


class Site(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    name: str  # human name, any characters (e.g. 石狩川 旭橋)
    type: Literal["river", "snow", "slope", "other"]
    lat: float | None = None
    lon: float | None = None
    # Snow sites: the road class whose plow-dispatch rule applies (RegistryFile.road_classes).
    road_class: Ident | None = None


class Threshold(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: Annotated[int, msgspec.Meta(ge=1, le=5)]
    value: float
    name: str  # e.g. "evacuation judgement"
    name_ja: str = ""  # e.g. 避難判断水位


NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]

# Rate units detection can report in, with their length of time in seconds.  The series' own
# length unit is converted for mm/cm/m (e.g. a displacement series in mm, rate in mm/day) and
# deg -> arcsec for tilt (arc-seconds per day is how tilt-meter criteria are written).
RATE_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0}


class RateThreshold(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: Annotated[int, msgspec.Meta(ge=1, le=5)]
    value: Positive  # in the rate's unit, magnitude in the dangerous direction
    name: str
    name_ja: str = ""


class RateConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Rate of change over a robust (Theil-Sen) window, e.g. river rise in m/h, slope movement in
    mm/day, tilt in arcsec/day.  Without thresholds the rate is still computed, shown on alerts and
    stored (measurement `detections`)."""

    unit: str  # e.g. "m/h", "mm/day", "arcsec/day": series length unit (or arcsec for deg) / time
    window_s: Positive = 3600.0
    min_duration_s: NonNegative = 0.0  # the rate must stay past a threshold this long to raise it
    clear_margin: NonNegative = 0.0  # in the rate's unit
    thresholds: list[RateThreshold] = []


class ForecastConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Trend forecast of the time to the next level (Theil-Sen over `window_s`), announced only when
    the trend is significant and the level is due within `horizon_s`."""

    window_s: Positive = 3600.0
    horizon_s: Positive = 6 * 3600.0


class FailureForecastConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Inverse-velocity (Fukuzono) slope-failure forecast on a displacement or tilt series.  An
    alert is raised at `level` when a forecast exists and failure is due within `alert_within_s`."""

    level: Annotated[int, msgspec.Meta(ge=1, le=5)] = 4
    name: str = "failure forecast"
    name_ja: str = "崩壊予測"
    alert_within_s: Positive = 24 * 3600.0
    bin_s: Positive = 3600.0
    fit_window_s: Positive = 24 * 3600.0
    min_points: Annotated[int, msgspec.Meta(ge=3)] = 6
    max_horizon_s: Positive = 7 * 86400.0


class QualityChecks(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Data-quality checks of one series (cloud/detect/quality.py).  Samples failing them are
    held back from disaster detection and raise maintenance alerts."""

    window: Annotated[int, msgspec.Meta(ge=3, le=200)] = 15
    k: Positive = 6.0
    min_scale: NonNegative = 0.0  # sensor resolution / noise floor, in the series unit
    max_rate_per_h: Positive | None = None  # a physically impossible change rate
    shift_confirm_s: Positive = 1800.0
    flatline_s: Positive | None = None  # None: no stuck-sensor check
    flatline_epsilon: NonNegative = 0.0
    flatline_min_samples: Annotated[int, msgspec.Meta(ge=2)] = 10


class Channel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One measured kind of a sensor, with its range, thresholds and detection settings."""

    unit: str
    range: tuple[float, float] | None = None
    direction: Literal["rising", "falling", "absolute"] = "rising"  # which way is dangerous
    # Clear a level only once the value is back by this much below its threshold (hysteresis),
    # so a value hovering at a threshold does not flap; or once it has stayed below the
    # threshold itself for clear_hold_s.
    clear_margin: NonNegative = 0.0
    clear_hold_s: Positive | None = None
    # Enter a level only once the value has been at or past it this long (0: at once).  Spikes
    # are the quality checks' job; this is against noise riding on a value near a threshold.
    min_duration_s: NonNegative = 0.0
    # Compare the median of the samples of the last smooth_s with the thresholds instead of each
    # sample (0: each sample).  For slow, noisy series (tilt creeping 0.005 deg/h under 0.002 deg
    # of noise), where single samples reach a threshold long before the ground does.
    smooth_s: NonNegative = 0.0
    thresholds: list[Threshold] = []
    rate: RateConfig | None = None
    forecast: ForecastConfig | None = None
    failure_forecast: FailureForecastConfig | None = None
    snowfall: bool = False  # compute JMA new snowfall (a snow_depth channel in cm)
    quality: QualityChecks = QualityChecks()
    # Maintenance alerts: no reading at all for stale_after_s (None: never), only quality-flagged
    # readings for failing_after_s.
    stale_after_s: Positive | None = 3600.0
    failing_after_s: Positive = 600.0

    def out_of_range(self, reading: Reading) -> bool:
        """An ok value outside the physical range (what ingest rejects and detection hears of)."""
        if reading.q is not Quality.OK or reading.value is None or self.range is None:
            return False
        lo, hi = self.range
        return not lo <= reading.value <= hi


class Sensor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    gateway: Ident
    site: Ident
    name: str = ""
    channels: dict[str, Channel] = {}  # keyed by kind (river_level, snow_depth, tilt_x, ...)


class Gateway(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    name: str = ""
    # Offline (maintenance alert) when nothing arrived from it for this long; set it above the
    # gateway's health_interval and batch interval.  None: only its Last Will counts.
    offline_after_s: Positive | None = 600.0
    # Set by `bosai gateway revoke` (ISO time).  A revoked gateway and its sensors stay in the
    # file for the record but are unknown at runtime: anything still arriving under its name is
    # rejected and counted as a security event.
    revoked: str | None = None


class RoadClass(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Plow dispatch rule: alert when new snowfall over `window_h` reaches `new_snow_cm`."""

    new_snow_cm: Positive
    window_h: Literal[1, 3, 6, 12, 24] = 24
    name: str = "plow dispatch"
    name_ja: str = "除雪出動"


# Asahikawa's rule of thumb (DESIGN.md): about 10 cm of new snow on arterial roads, 15 cm on
# residential ones.  A registry may override or add classes.
DEFAULT_ROAD_CLASSES = {
    "arterial": RoadClass(10.0, name="plow dispatch (arterial)", name_ja="除雪出動 (幹線道路)"),
    "residential": RoadClass(15.0, name="plow dispatch (residential)", name_ja="除雪出動 (生活道路)"),
}


class RegistryFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tenants: list[Tenant]
    sites: list[Site]
    gateways: list[Gateway]
    sensors: list[Sensor]
    road_classes: dict[str, RoadClass] = {}  # added to (and overriding) DEFAULT_ROAD_CLASSES
    # Glob patterns of fragment files (relative to this file) whose entities are added to these,
    # e.g. "gateways.d/*/*.yaml": `bosai gateway provision` writes one fragment per gateway there,
    # so the hand-written file is never rewritten by a tool.
    include: list[str] = []


class RegistryFragment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An included file: the same lists, each optional."""

    tenants: list[Tenant] = []
    sites: list[Site] = []
    gateways: list[Gateway] = []
    sensors: list[Sensor] = []


class Registry:
    """Lookup structure built from a RegistryFile (sensor ids are unique per tenant).

    Revoked gateways and their sensors are left out of `data` and every lookup; their keys are
    in `revoked`."""

    def __init__(self, data: RegistryFile) -> None:
        self.revoked = {(g.tenant, g.id) for g in data.gateways if g.revoked is not None}
        if self.revoked:
            data = msgspec.structs.replace(
                data,
                gateways=[g for g in data.gateways if (g.tenant, g.id) not in self.revoked],
                sensors=[s for s in data.sensors if (s.tenant, s.gateway) not in self.revoked],
            )
        self.data = data
        self.tenants = {t.id: t for t in data.tenants}
        self.sites = {(s.tenant, s.id): s for s in data.sites}
        self.gateways = {(g.tenant, g.id): g for g in data.gateways}
        self.sensors = {(s.tenant, s.id): s for s in data.sensors}
        self.road_classes = {**DEFAULT_ROAD_CLASSES, **data.road_classes}

    def sensor_for(self, tenant: str, gateway: str, sensor: str) -> Sensor | None:
        """The sensor if it is registered to exactly this tenant and gateway, else None."""
        s = self.sensors.get((tenant, sensor))
        if s is None or s.gateway != gateway:
            return None
        return s

    def site_of(self, sensor: Sensor) -> Site:
        return self.sites[(sensor.tenant, sensor.site)]

    def road_class(self, site: Site) -> RoadClass | None:
        return self.road_classes.get(site.road_class) if site.road_class else None


def load_registry(path: str | Path) -> Registry:
    data = configfile.load(path, RegistryFile)
    fragments = [(Path(path), RegistryFragment(data.tenants, data.sites, data.gateways, data.sensors))]
    for pattern in data.include:
        for fragment_path in sorted(Path(path).parent.glob(pattern)):
            fragments.append((fragment_path, configfile.load(fragment_path, RegistryFragment)))
    for file, fragment in fragments:
        _check_file(file, fragment)
    merged = msgspec.structs.replace(
        data,
        tenants=[t for _, f in fragments for t in f.tenants],
        sites=[s for _, f in fragments for s in f.sites],
        gateways=[g for _, f in fragments for g in f.gateways],
        sensors=[s for _, f in fragments for s in f.sensors],
    )
    _check_references(fragments, merged)
    return Registry(merged)


def _check_file(path: Path, data: RegistryFragment) -> None:
    """What can be checked within one file: time zones, thresholds, detection settings."""
    for i, t in enumerate(data.tenants):
        try:
            ZoneInfo(t.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                path, f"tenants[{i}] (id {t.id!r}): field 'timezone'", f"unknown time zone {t.timezone!r}"
            ) from None
    for i, s in enumerate(data.sensors):
        where = f"sensors[{i}] (id {s.id!r})"
        for kind_name, ch in s.channels.items():
            cw = f"{where}: channels: {kind_name}"
            levels = [t.level for t in ch.thresholds]
            if levels != sorted(set(levels)):
                raise ConfigError(path, f"{cw}: field 'thresholds'", "levels must be unique and ascending")
            values = [t.value for t in ch.thresholds]
            ordered = sorted(values, reverse=ch.direction == "falling")
            if values != ordered:
                raise ConfigError(
                    path,
                    f"{cw}: field 'thresholds'",
                    f"values must grow with the level for direction {ch.direction!r}",
                )
            if ch.range is not None and ch.range[0] >= ch.range[1]:
                raise ConfigError(path, f"{cw}: field 'range'", "min must be below max")
            _check_detection(path, cw, ch)


def _check_references(fragments: list[tuple[Path, RegistryFragment]], data: RegistryFile) -> None:
    """Ids unique per tenant across all files, and every reference resolving; errors name the
    file the entity came from."""
    tenants = {t.id for t in data.tenants}
    seen_tenants: set[str] = set()
    road_classes = {**DEFAULT_ROAD_CLASSES, **data.road_classes}
    site_ids = {(s.tenant, s.id) for s in data.sites}
    gw_ids = {(g.tenant, g.id) for g in data.gateways}
    seen: dict[str, set[tuple[str, str]]] = {"sites": set(), "gateways": set(), "sensors": set()}
    for path, fragment in fragments:
        for i, t in enumerate(fragment.tenants):
            if t.id in seen_tenants:
                raise ConfigError(path, f"tenants[{i}] (id {t.id!r}): field 'id'", "duplicate tenant id")
            seen_tenants.add(t.id)
        groups: tuple[tuple[str, Sequence[Site | Gateway | Sensor]], ...] = (
            ("sites", fragment.sites),
            ("gateways", fragment.gateways),
            ("sensors", fragment.sensors),
        )
        for kind, items in groups:
            for i, item in enumerate(items):
                where = f"{kind}[{i}] (id {item.id!r})"
                if item.tenant not in tenants:
                    raise ConfigError(path, f"{where}: field 'tenant'", f"no tenant {item.tenant!r}")
                if (item.tenant, item.id) in seen[kind]:
                    raise ConfigError(path, f"{where}: field 'id'", f"duplicate id in tenant {item.tenant!r}")
                seen[kind].add((item.tenant, item.id))
        for i, site in enumerate(fragment.sites):
            if site.road_class is not None and site.road_class not in road_classes:
                raise ConfigError(
                    path,
                    f"sites[{i}] (id {site.id!r}): field 'road_class'",
                    f"no road class {site.road_class!r} (known: {', '.join(sorted(road_classes))})",
                )
        for i, s in enumerate(fragment.sensors):
            where = f"sensors[{i}] (id {s.id!r})"
            if (s.tenant, s.site) not in site_ids:
                raise ConfigError(
                    path, f"{where}: field 'site'", f"no site {s.site!r} in tenant {s.tenant!r}"
                )
            if (s.tenant, s.gateway) not in gw_ids:
                raise ConfigError(
                    path, f"{where}: field 'gateway'", f"no gateway {s.gateway!r} in tenant {s.tenant!r}"
                )


def rate_factor(series_unit: str, rate_unit: str) -> float | None:
    """Multiply a rate in series units per second by this to get `rate_unit`; None if the two do
    not fit (e.g. a series in m and a rate in arcsec/day)."""
    if "/" not in rate_unit:
        return None
    length, _, per = rate_unit.partition("/")
    seconds = RATE_TIME_UNITS.get(per)
    factor = units.conversion(series_unit, length)
    return None if seconds is None or factor is None else factor * seconds


def _check_detection(path: str | Path, cw: str, ch: Channel) -> None:
    if ch.rate is not None:
        if rate_factor(ch.unit, ch.rate.unit) is None:
            raise ConfigError(
                path,
                f"{cw}: rate: field 'unit'",
                f"{ch.rate.unit!r} is not a rate of {ch.unit!r} (e.g. {ch.unit}/h, {ch.unit}/day)",
            )
        levels = [t.level for t in ch.rate.thresholds]
        values = [t.value for t in ch.rate.thresholds]
        if levels != sorted(set(levels)) or values != sorted(values):
            raise ConfigError(
                path, f"{cw}: rate: field 'thresholds'", "levels must be unique and ascending, values too"
            )
    if ch.snowfall and ch.unit != "cm":
        raise ConfigError(
            path, f"{cw}: field 'snowfall'", f"new snowfall needs a depth in cm, not {ch.unit!r}"
        )
    if ch.failure_forecast is not None and not any(ch.unit in g for g in units.UNIT_GROUPS):
        raise ConfigError(
            path, f"{cw}: field 'failure_forecast'", f"needs a displacement or tilt series, not {ch.unit!r}"
        )
