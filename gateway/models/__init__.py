"""Models on disk: ``pull`` (a GGUF from a URL or a Hugging Face repository into the models
folder, resumable, checked against the hub's sha256) and the models folder itself (a NAME
finds its file). The console's ``llama-gateway pull`` and the gateway's ``POST /api/pull``
both use :func:`pull`."""

from gateway.models.errors import PullError
from gateway.models.library import Manifest, models_folder, pulled, resolve, resolve_models
from gateway.models.pull import PullEvent, pull

__all__ = [
    "Manifest",
    "PullError",
    "PullEvent",
    "models_folder",
    "pull",
    "pulled",
    "resolve",
    "resolve_models",
]
