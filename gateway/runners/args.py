"""The ``llama-server`` command line of a declared model, the same for every driver: a local
process gets it after the binary, a container after the image's entrypoint (with the model
paths moved under the container's ``/models`` mount by the caller)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import ModelSpec


def server_args(
    spec: ModelSpec,
    *,
    host: str | None,
    port: int | None,
    api_key: str | None,
    path: Callable[[str], str] = str,
) -> list[str]:
    """The flags for ``spec``; ``host``/``port`` are left to the environment when ``None``
    (``LLAMA_ARG_HOST``/``LLAMA_ARG_PORT``, as the official images set them); ``path`` maps a
    file on this machine to the runner's view of it."""
    args = ["-m", path(spec.path)] if spec.path else ["-hf", str(spec.hf)]
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    args += [
        "--alias",
        spec.model_id,
        "-np",
        str(spec.parallel),
        "-c",
        str(spec.ctx_size),
        "--metrics",
    ]
    if spec.cache_type_k != "f16":
        args += ["-ctk", spec.cache_type_k]
    if spec.cache_type_v != "f16":
        args += ["-ctv", spec.cache_type_v]
    if spec.embeddings:
        args.append("--embeddings")
        if spec.pooling:
            args += ["--pooling", spec.pooling]
    if spec.mmproj:
        args += ["--mmproj", path(spec.mmproj)]
    if spec.chat_template:
        args += ["--chat-template", spec.chat_template]
    if api_key:
        args += ["--api-key", api_key]
    return args + list(spec.extra_args)
