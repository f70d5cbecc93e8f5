"""The live console at ``/ui``: a page of plain ES modules and its server-sent events."""

from gateway.console.routes import ROUTES
from gateway.console.series import Sampler

__all__ = ["ROUTES", "Sampler"]
