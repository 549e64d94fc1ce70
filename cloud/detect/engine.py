"""The detection engine: every series' detectors (cloud.detect.series) and every gateway's
liveness, fed by the consumer (live) or by `bosai replay` / `bosai evaluate` (history).

Gateways: offline on their Last Will (status "offline"), or when nothing (telemetry, health,
status) has come from them for the registry's `offline_after_s`; online again on the next sign of
life.  While a gateway is offline its sensors raise no `stale` alerts: the technician gets one
alert for the cause, not one per sensor.

Time: readings carry sample times; `tick(now)` is called with clock time by the consumer and
with the data's time by replay, so the same engine serves both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud.detect.observation import AlertKey, Observation, gateway_key
from cloud.detect.series import SeriesDetector, Snapshot
from cloud.detect.texts import clock, span
from cloud.registry import Channel, Registry, Sensor, Site
from wire import alerts as wa
from wire.telemetry import Quality, Reading

SeriesKey = tuple[str, str, str]  # tenant, sensor, kind


@dataclass
class GatewayState:
    last_seen: float | None = None  # latest time we know it was alive
    offline: bool = False
    offline_since: float | None = None
    will: bool = False  # offline because of its Last Will (vs silence)


class Engine:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.series: dict[SeriesKey, SeriesDetector] = {}
        self.gateways: dict[tuple[str, str], GatewayState] = {}
        self._tz = {t.id: ZoneInfo(t.timezone) for t in registry.data.tenants}

    def detector(self, sensor: Sensor, site: Site, kind: str, channel: Channel) -> SeriesDetector:
        key = (sensor.tenant, sensor.id, kind)
        det = self.series.get(key)
        if det is None:
            road = self.registry.road_class(site)
            det = self.series[key] = SeriesDetector(
                sensor, site, kind, channel, road, self._tz[sensor.tenant]
            )
        return det

    # --- input ---

    def reading(self, reading: Reading, sensor: Sensor, site: Site, channel: Channel) -> list[Observation]:
        det = self.detector(sensor, site, reading.kind, channel)
        return det.reading(reading.ts.timestamp(), reading.q, reading.value)

    def out_of_range(
        self, reading: Reading, sensor: Sensor, site: Site, channel: Channel
    ) -> list[Observation]:
        if reading.value is None:
            return []
        det = self.detector(sensor, site, reading.kind, channel)
        return det.out_of_range(reading.ts.timestamp(), reading.value)

    def snapshot(self, sensor: Sensor, kind: str, t: float) -> Snapshot | None:
        det = self.series.get((sensor.tenant, sensor.id, kind))
        return det.snapshot(t) if det is not None else None

    def gateway_alive(self, tenant: str, gateway: str, t: float) -> list[Observation]:
        """A sign of life at time t (telemetry sent, health ts, birth message)."""
        st = self.gateways.setdefault((tenant, gateway), GatewayState())
        if st.last_seen is not None and t <= st.last_seen and not st.will:
            return []
        st.last_seen = t if st.last_seen is None else max(st.last_seen, t)
        if not st.offline:
            return []
        if st.will and st.offline_since is not None and t <= st.offline_since:
            return []  # older than the Last Will: a backlog message, not a reconnection
        since = st.offline_since
        st.offline, st.offline_since, st.will = False, None, False
        down = f" after {span(t - since)}" if since is not None else ""
        return [
            self._gateway_obs(tenant, gateway, 0, t, f"{self._gw_name(tenant, gateway)}: back online{down}")
        ]

    def gateway_will(self, tenant: str, gateway: str, t: float) -> list[Observation]:
        """Its Last Will ("offline") arrived at clock time t."""
        st = self.gateways.setdefault((tenant, gateway), GatewayState())
        if st.offline:
            st.will = True
            return []
        st.offline, st.offline_since, st.will = True, t, True
        name, at = self._gw_name(tenant, gateway), self._clock(tenant, t)
        reason = f"{name}: offline at {at} (status 'offline': its Last Will, or the agent stopped)"
        return [self._gateway_obs(tenant, gateway, 1, t, reason)]

    def tick(self, now: float) -> list[Observation]:
        """Silence checks: gateways not heard from, sensors without readings."""
        out: list[Observation] = []
        for (tenant, gw_id), st in self.gateways.items():
            gw = self.registry.gateways.get((tenant, gw_id))
            limit = gw.offline_after_s if gw is not None else None
            if st.offline or limit is None or st.last_seen is None or now - st.last_seen < limit:
                continue
            st.offline, st.offline_since, st.will = True, st.last_seen, False
            last = st.last_seen
            reason = (
                f"{self._gw_name(tenant, gw_id)}: nothing received since {self._clock(tenant, last)} "
                f"({span(now - last)}; expected within {span(limit)})"
            )
            out.append(self._gateway_obs(tenant, gw_id, 1, now, reason))
        for det in self.series.values():
            state = self.gateways.get((det.sensor.tenant, det.sensor.gateway))
            out.extend(det.tick(now, gateway_offline=state is not None and state.offline))
        return out

    def warm_up(self, samples: Iterable[tuple[str, str, str, float, float]]) -> int:
        """Feed journalled clean samples (tenant, sensor, kind, t, value; per series in time
        order) to the detectors silently, then forget the levels they reached: call restore()
        next.  Returns the number of samples used."""
        used = 0
        for tenant, sensor_id, kind, t, value in samples:
            sensor = self.registry.sensors.get((tenant, sensor_id))
            channel = sensor.channels.get(kind) if sensor is not None else None
            if sensor is None or channel is None:
                continue
            self.detector(sensor, self.registry.site_of(sensor), kind, channel).reading(t, Quality.OK, value)
            used += 1
        for det in self.series.values():
            det.forget_levels()
        return used

    def restore(self, active: Iterable[tuple[AlertKey, int]]) -> None:
        """Resume the levels of alerts the store says are active (after a restart)."""
        for key, level in active:
            if not key.sensor:
                st = self.gateways.setdefault((key.tenant, key.gateway), GatewayState())
                st.offline = key.condition == wa.GATEWAY_OFFLINE and level > 0
                continue
            sensor = self.registry.sensors.get((key.tenant, key.sensor))
            channel = sensor.channels.get(key.kind) if sensor is not None else None
            if sensor is None or channel is None:
                continue  # no longer registered: the alert manager resolves it
            self.detector(sensor, self.registry.site_of(sensor), key.kind, channel).restore(
                key.condition, level
            )

    # --- helpers ---

    def _gateway_obs(self, tenant: str, gateway: str, level: int, t: float, reason: str) -> Observation:
        return Observation(
            gateway_key(tenant, gateway, wa.GATEWAY_OFFLINE),
            level,
            datetime.fromtimestamp(t, UTC),
            reason,
            gateway=gateway,
            level_name="gateway offline" if level else "",
        )

    def _gw_name(self, tenant: str, gateway: str) -> str:
        gw = self.registry.gateways.get((tenant, gateway))
        return f"gateway {gateway}" + (f" ({gw.name})" if gw is not None and gw.name else "")

    def _clock(self, tenant: str, t: float) -> str:
        return clock(t, self._tz.get(tenant, ZoneInfo("Asia/Tokyo")))
