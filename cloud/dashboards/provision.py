"""`bosai dashboards provision`: put the folder, the InfluxDB data source and every dashboard into
a running Grafana through its HTTP API (grafana-client), for setups without file provisioning.

Idempotent: everything is found by its fixed uid (folder "bosai", data source "bosai-influxdb",
the dashboards' own uids) and created when missing, updated otherwise; dashboards are saved with
overwrite, so running it twice changes nothing but Grafana's version counters.

Secrets (the Grafana token or password, the InfluxDB token) come from files readable by their
owner only and never appear in output: Grafana's error messages are printed with any secret
masked.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import msgspec

from cloud.dashboards.grafana import DATASOURCE_UID, Json

# grafana-client has no type annotations: its GrafanaApi is handled as Any here.
GrafanaApi = Any

FOLDER_UID = "bosai"
DEFAULT_FOLDER = "Bosai 防災"
DATASOURCE_NAME = "bosai InfluxDB"
TIMEOUT_S = 15.0


class ProvisionError(Exception):
    """Grafana refused a request or could not be reached; str() is safe to print."""


class DatasourceSettings(msgspec.Struct, frozen=True, kw_only=True):
    influx_url: str
    database: str = "bosai"
    token: str | None = None  # InfluxDB 2.x/3.x: sent as "Authorization: Token ..." by Grafana

    def body(self) -> Json:
        """Grafana's data source model, as in dashboards/provisioning/datasources/bosai.yaml."""
        json_data: Json = {
            "version": "InfluxQL",
            "dbName": self.database,
            "httpMode": "GET",  # InfluxDB 3.x documents GET for its v1 /query API
            "timeInterval": "1m",  # gateways poll every 60 s
        }
        body: Json = {
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": "influxdb",
            "access": "proxy",
            "url": self.influx_url,
            "database": self.database,  # read by Grafana versions before jsonData.dbName
            "isDefault": False,  # the dashboards name it by uid; another default stays the default
            "jsonData": json_data,
        }
        if self.token:
            json_data["httpHeaderName1"] = "Authorization"
            body["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        return body


def connect(grafana_url: str, credential: str | tuple[str, str]) -> GrafanaApi:
    """A client for `grafana_url` (http or https, with an optional path prefix) authenticating
    with a bearer token (a service account token) or (user, password)."""
    from grafana_client.api import GrafanaApi as Client

    parts = urlsplit(grafana_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--grafana-url must be http(s)://host[:port][/path], not {grafana_url!r}")
    if parts.username or parts.password:
        raise ValueError(
            "--grafana-url must not carry credentials: use --token-file or --user/--password-file"
        )
    return Client.from_url(grafana_url, credential=credential, timeout=TIMEOUT_S)


def provision(
    api: GrafanaApi,
    dashboards: dict[str, Json],
    datasource: DatasourceSettings,
    folder_title: str,
    say: Callable[[str], None],
    secrets: tuple[str, ...] = (),
) -> None:
    """Create or update the folder, the data source and every dashboard; `say` gets one line
    per object.  ProvisionError on the first request Grafana refuses (with its message)."""
    calls = _Calls(api, secrets)
    folder = calls.find(lambda: api.folder.get_folder(FOLDER_UID))
    if folder is None:
        calls.run(lambda: api.folder.create_folder(folder_title, uid=FOLDER_UID))
        say(f"folder {FOLDER_UID} {folder_title!r}: created")
    elif folder.get("title") != folder_title:
        calls.run(lambda: api.folder.update_folder(FOLDER_UID, title=folder_title, overwrite=True))
        say(f"folder {FOLDER_UID} {folder_title!r}: updated (was {folder.get('title')!r})")
    else:
        say(f"folder {FOLDER_UID} {folder_title!r}: unchanged")

    body = datasource.body()
    if calls.find(lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID)) is None:
        calls.run(lambda: api.datasource.create_datasource(body))
        verb = "created"
    else:
        calls.run(lambda: api.datasource.update_datasource_by_uid(DATASOURCE_UID, body))
        verb = "updated"
    auth = ", token header" if datasource.token else ""
    say(
        f"datasource {DATASOURCE_UID} ({datasource.influx_url}, database {datasource.database}{auth}): {verb}"
    )

    for uid, dashboard in dashboards.items():
        existed = calls.find(partial(api.dashboard.get_dashboard, uid)) is not None
        payload = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "bosai dashboards provision",
        }
        calls.run(partial(api.dashboard.update_dashboard, payload))
        say(f"dashboard {uid} {dashboard['title']!r}: {'updated' if existed else 'created'}")


class _Calls:
    """Runs client calls, turning the client's exceptions into ProvisionError with secrets masked."""

    def __init__(self, api: GrafanaApi, secrets: tuple[str, ...]) -> None:
        self.url = str(api.client.url)
        self.secrets = tuple(s for s in secrets if s)

    def find(self, call: Callable[[], Any]) -> Json | None:
        """The object, or None when Grafana answers 404."""
        from grafana_client.client import GrafanaClientError

        try:
            return self.run(call)
        except ProvisionError as exc:
            cause = exc.__cause__
            if isinstance(cause, GrafanaClientError) and cause.status_code == 404:
                return None
            raise

    def run(self, call: Callable[[], Any]) -> Json:
        import niquests
        from grafana_client.client import GrafanaException

        try:
            result: Json = call()
            return result
        except (GrafanaException, niquests.exceptions.RequestException, OSError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> ProvisionError:
        from grafana_client.client import GrafanaException

        if isinstance(exc, GrafanaException):
            text = f"Grafana at {self.url} answered: {exc.message}"
        else:
            text = f"cannot reach Grafana at {self.url}: {exc.__class__.__name__}: {exc}"
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return ProvisionError(text)
