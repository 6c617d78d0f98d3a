"""The HTTP intake: `POST /ingest/{device}` for loggers that cannot speak MQTT (GSM
loggers, vendor gateways).

The body is what the device would publish on `{root}/sensors/{device}/up` (native JSON,
SenML JSON or SenML CBOR, by Content-Type) and takes the same way through ingest: the
same decoding, validation, message budget and dead letters, and the same spool. The
answer comes after the readings are in the spool (fsynced) and the dead letters are
published, and carries each rejection's reason. Each device has its own bearer token,
stored hashed (ingest.tokens).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated

import anyio.to_thread
import uvicorn
from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from ingest.service import IngestService
from ingest.tokens import DeviceTokens
from pantau.settings import IngestSettings
from pantau.topics import DEVICE_ID_PATTERN
from pantau.wire import SENML_CBOR_CONTENT_TYPE, SENML_CONTENT_TYPE

log = logging.getLogger(__name__)


class Refusal(BaseModel):
    reason: str
    detail: str


class Answer(BaseModel):
    accepted: int  # readings now in the spool
    rejected: list[Refusal]  # each also on {root}/deadletter/{reason}


class Problem(BaseModel):
    detail: str


_JSON_BODY = {"type": "object"}
_SENML_BODY = {"type": "array", "items": {"type": "object"}}
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [_JSON_BODY, _SENML_BODY]}},
        SENML_CONTENT_TYPE: {"schema": _SENML_BODY},
        SENML_CBOR_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
    },
}


# Module level: FastAPI resolves the handler's (string) annotations in this namespace.
bearer = HTTPBearer(auto_error=False, description="the device's token (pantau ingest token)")


def create_app(service: IngestService, tokens: DeviceTokens, settings: IngestSettings) -> FastAPI:
    app = FastAPI(
        title="Pantau HTTP intake",
        summary="device readings over HTTP, onto ingest's validation, dead letters and spool",
    )
    limit = settings.max_payload_bytes

    @app.post(
        "/ingest/{device}",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            200: {"model": Answer, "description": "stored (rejected records listed)"},
            400: {"model": Answer, "description": "nothing stored: the reasons"},
            401: {"model": Problem, "description": "no or wrong token for this device"},
            413: {"model": Answer, "description": "body over the size limit"},
            429: {"model": Answer, "description": "over the device's message budget"},
            503: {"model": Problem, "description": "ingest is saturated: try again"},
        },
        response_model=Answer,
    )
    async def ingest(
        device: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> JSONResponse:
        token = credentials.credentials if credentials else ""
        if not await anyio.to_thread.run_sync(tokens.verify, device, token):
            return JSONResponse(
                {"detail": "no or wrong token for this device"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # one byte over is enough to refuse it as too_large
                del body[limit + 1 :]
                break
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        outcome = await anyio.to_thread.run_sync(
            service.submit, device, bytes(body), content_type or None, settings.http_wait_s
        )
        if outcome is None:
            return JSONResponse(
                {"detail": "ingest is saturated; try again"}, 503, headers={"Retry-After": "5"}
            )
        answer = Answer(
            accepted=len(outcome.lines),
            rejected=[Refusal(reason=r.reason, detail=r.detail) for r in outcome.rejections],
        )
        reasons = {r.reason for r in outcome.rejections}
        status = (
            200
            if outcome.lines
            else 413
            if "too_large" in reasons
            else 429
            if "rate_limited" in reasons
            else 400
        )
        return JSONResponse(answer.model_dump(), status)

    return app


class HttpIntake:
    """The intake's server on a thread of the ingest process (uvicorn)."""

    def __init__(self, service: IngestService, settings: IngestSettings, port: int) -> None:
        self.tokens = DeviceTokens(settings.http_tokens)
        self.app = create_app(service, self.tokens, settings)
        config = uvicorn.Config(
            self.app, host=settings.http_host, port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ingest-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP intake did not start (port in use?)")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class WithHttpIntake:
    """Ingest with its HTTP intake: the intake starts after ingest and stops before it,
    so no request waits on a stopped pipeline."""

    def __init__(self, service: IngestService, intake: HttpIntake) -> None:
        self.service = service
        self.intake = intake

    def start(self) -> None:
        self.service.start()
        self.intake.start()

    def stop(self) -> None:
        self.intake.stop()
        self.service.stop()
