"""Upload the generated dashboards to a running Grafana through grafana-client.

Idempotent by uid: each dashboard is saved with `overwrite` into the Pantau folder, so
a second push replaces the first (Grafana keeps the versions). Wrong URLs and tokens
end in a PushError that says which, before any dashboard is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)

from dashboards.build import GENERATED
from pantau.errors import PantauError

FOLDER_UID = "pantau"
FOLDER_TITLE = "Pantau"
TIMEOUT_S = 10.0
FORBIDDEN = 403
NOT_FOUND = 404


class PushError(PantauError):
    """Grafana could not be reached, refused the token, or is not Grafana."""


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    title: str
    version: int
    url: str


def load_generated(directory: Path = GENERATED) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))
    ]
    if not models:
        raise PushError(f"no dashboards in {directory}: run `pantau dashboards build`")
    return models


def push(
    url: str, token: str, models: list[dict[str, Any]], folder_uid: str = FOLDER_UID
) -> list[Pushed]:
    api = GrafanaApi.from_url(url, credential=token, timeout=TIMEOUT_S)
    _ensure_folder(api, url, folder_uid)
    done = []
    for model in models:
        save = {
            "dashboard": {k: v for k, v in model.items() if k != "id"},  # the uid identifies it
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "pantau dashboards push",
        }
        saved = _call(url, partial(api.dashboard.update_dashboard, save))
        if not isinstance(saved, dict) or saved.get("uid") != model["uid"]:
            raise PushError(f"{url}: unexpected answer saving {model['uid']!r}: {saved!r}")
        done.append(
            Pushed(model["uid"], model["title"], int(saved.get("version", 0)), str(saved["url"]))
        )
    return done


def _ensure_folder(api: GrafanaApi, url: str, folder_uid: str) -> None:
    """Also the first authenticated call: it tells a wrong URL or token apart."""
    folders = _call(url, api.folder.get_all_folders)
    if not isinstance(folders, list):
        raise PushError(f"{url} answered, but not as Grafana's HTTP API (no folder list)")
    if not any(isinstance(f, dict) and f.get("uid") == folder_uid for f in folders):
        _call(url, lambda: api.folder.create_folder(FOLDER_TITLE, uid=folder_uid))


def _call(url: str, request: Callable[[], Any]) -> Any:
    try:
        return request()
    except GrafanaUnauthorizedError as err:
        raise PushError(
            f"{url} refused the token (HTTP 401): use a Grafana service-account token "
            "with the Editor role"
        ) from err
    except GrafanaClientError as err:
        if err.status_code == FORBIDDEN:
            raise PushError(
                f"{url}: the token may not do this (HTTP 403): give its service account "
                "the Editor role"
            ) from err
        if err.status_code == NOT_FOUND:
            raise PushError(f"{url}: no Grafana HTTP API there (HTTP 404 on /api)") from err
        raise PushError(f"{url}: Grafana refused the request: {err.message}") from err
    except GrafanaException as err:
        raise PushError(f"{url}: Grafana failed: {err.message}") from err
    except requests.exceptions.JSONDecodeError as err:
        raise PushError(f"{url} answered, but not as Grafana's HTTP API (not JSON)") from err
    except requests.exceptions.RequestException as err:
        raise PushError(f"cannot reach Grafana at {url}: {err}") from err
