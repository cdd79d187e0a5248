"""Domain errors and the one registry of protocol error codes.

Every error a client can see is an :class:`ErrorCode` registered here once, with
its HTTP status and default message (the OCI Distribution Spec codes plus
hamn's own). Services raise :class:`HamnError`; only the HTTP edge renders it,
in one function, so codes and statuses never drift between handlers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A protocol error code: the code string, its default message and HTTP status."""

    code: str
    message: str
    status: int


CODES: dict[str, ErrorCode] = {}


def _register(code: str, message: str, status: int) -> ErrorCode:
    if code in CODES:
        raise ValueError(f"error code {code} registered twice")
    CODES[code] = ErrorCode(code, message, status)
    return CODES[code]


# OCI Distribution Spec v1.1 error codes.
BLOB_UNKNOWN = _register("BLOB_UNKNOWN", "blob unknown to registry", 404)
BLOB_UPLOAD_INVALID = _register("BLOB_UPLOAD_INVALID", "blob upload invalid", 400)
BLOB_UPLOAD_UNKNOWN = _register("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
DIGEST_INVALID = _register("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
MANIFEST_BLOB_UNKNOWN = _register(
    "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400
)
MANIFEST_INVALID = _register("MANIFEST_INVALID", "manifest invalid", 400)
MANIFEST_UNKNOWN = _register("MANIFEST_UNKNOWN", "manifest unknown to registry", 404)
NAME_INVALID = _register("NAME_INVALID", "invalid repository name", 400)
NAME_UNKNOWN = _register("NAME_UNKNOWN", "repository name not known to registry", 404)
SIZE_INVALID = _register("SIZE_INVALID", "provided length did not match content length", 400)
UNAUTHORIZED = _register("UNAUTHORIZED", "authentication required", 401)
DENIED = _register("DENIED", "requested access to the resource is denied", 403)
UNSUPPORTED = _register("UNSUPPORTED", "the operation is unsupported", 405)
TOOMANYREQUESTS = _register("TOOMANYREQUESTS", "too many requests", 429)

# hamn's own codes.
RANGE_INVALID = _register(
    "BLOB_UPLOAD_INVALID_RANGE", "the chunk does not continue the upload where it stands", 416
)
RANGE_NOT_SATISFIABLE = _register(
    "RANGE_NOT_SATISFIABLE", "the requested byte range is not satisfiable", 416
)
MANIFEST_TOO_LARGE = _register("MANIFEST_TOO_LARGE", "manifest is larger than the limit", 413)
TAG_INVALID = _register("TAG_INVALID", "invalid tag", 400)
PAGINATION_INVALID = _register(
    "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400
)
UPLOAD_BUSY = _register(
    "BLOB_UPLOAD_BUSY", "another request is writing to this upload; retry later", 409
)
BODY_INCOMPLETE = _register(
    "BODY_INCOMPLETE", "the client stopped sending before the request body was complete", 400
)
QUOTA_EXCEEDED = _register("QUOTA_EXCEEDED", "the registry's storage quota is exceeded", 403)
QUARANTINED = _register("QUARANTINED", "the content is quarantined", 403)
LOCKED = _register("LOCKED", "the content is locked against this operation", 405)
UNAVAILABLE = _register("UNAVAILABLE", "the service is temporarily unavailable; retry", 503)
NOT_FOUND = _register("NOT_FOUND", "not found", 404)
UNKNOWN = _register("UNKNOWN", "unknown error", 500)
# ACR's metadata API (/acr/v1/...).
TAG_UNKNOWN = _register("TAG_UNKNOWN", "tag unknown to registry", 404)
PARAMETER_INVALID = _register("PARAMETER_INVALID", "a query parameter is invalid", 400)
# The management API (/api/...).
ALREADY_EXISTS = _register("ALREADY_EXISTS", "a resource of that name already exists", 409)
IN_USE = _register("IN_USE", "the resource is in use", 409)
ADMIN_DISABLED = _register("ADMIN_DISABLED", "the registry's admin user is disabled", 409)
BODY_INVALID = _register("BODY_INVALID", "the request body is invalid", 400)


class HamnError(Exception):
    """A domain error that maps onto one registered protocol :class:`ErrorCode`.

    ``detail`` is a JSON-serialisable value that tells the client exactly what
    was wrong (the spec's ``detail`` field); ``message`` overrides the code's
    default message when a more specific sentence helps the user.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = headers or {}

    @property
    def status(self) -> int:
        """The HTTP status the code is registered with."""
        return self.code.status
