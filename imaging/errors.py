"""Domain exceptions of the store. They carry no HTTP: each protocol maps them to its own statuses in one table
(imaging/aws/envelope.py for the HealthImaging API and DICOMweb)."""
from __future__ import annotations


class ApertureError(Exception):
    """Base class; `message` is safe to show to the caller (no patient data, no secrets)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(ApertureError):
    """The request breaks a model constraint or a semantic rule."""


class NotFound(ApertureError):
    """The resource does not exist, or is DELETED where the operation cannot see deleted resources."""


class Conflict(ApertureError):
    """The resource is in a state that does not allow the operation (locked, stale version, not empty...)."""


class AccessDenied(ApertureError):
    """The principal's policy does not allow the action on the resource."""


class QuotaExceeded(ApertureError):
    """A service quota (SPEC 3.5) would be exceeded."""


class Throttled(ApertureError):
    """A rate limit was hit."""


class NotAcceptable(ApertureError):
    """The client's Accept header excludes every representation we can serve."""


class BadRequest(ApertureError):
    """The frame exists but cannot be served frame by frame."""


class PayloadTooLarge(ApertureError):
    """A request body over the limit of its route, refused before it is held (413)."""


class UnsupportedMediaType(ApertureError):
    """The request body's Content-Type is not one the operation accepts (415)."""
