"""Errors the service answers with. Each carries its HTTP status; `app` turns them into JSON
responses in exactly one handler.

    ServiceError                 500  the service itself failed
    ├── BadRequest               400  a field is missing or wrong (the message names its path)
    ├── NotFound                 404  unknown route or language
    ├── MethodNotAllowed         405
    ├── Conflict                 409  the session's state forbids it (code locked its folder)
    ├── PayloadTooLarge          413
    ├── UnsupportedMediaType     415
    ├── UpgradeRequired          426  a WebSocket route asked for without the upgrade
    ├── ServiceBusy              503  too many runs waiting; carries Retry-After
    └── ShuttingDown             503  the run was stopped by a shutdown
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class BadRequest(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class MethodNotAllowed(ServiceError):
    status = 405


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class UpgradeRequired(ServiceError):
    status = 426

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.headers.update({"Upgrade": "websocket", "Connection": "Upgrade"})


class ServiceBusy(ServiceError):
    status = 503

    def __init__(self, message: str, retry_after_s: int = 1, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.headers["Retry-After"] = str(retry_after_s)


class ShuttingDown(ServiceError):
    status = 503
