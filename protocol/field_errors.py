"""The one error of request resolution: a field whose value cannot be honoured (pure)."""

from __future__ import annotations


class RequestFieldError(ValueError):
    """A request field whose value cannot be honoured; becomes a 422 naming ``field`` (or
    ``status_code``: 413 for an init image over the deployment's size limit)."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
