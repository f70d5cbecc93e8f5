"""The OpenAPI 3.1 document of the gateway's own surface, at ``/openapi.json``: every route,
the request fields the gateway reads (from the endpoint table, ``gateway/requests.py``), the
error shapes of each surface, and the two ways to send a key. Litestar builds it once, on the
first request for it, off the hot path.

Request bodies are documented, not decoded by Litestar: the handlers read raw bytes (bodies
pass through to llama-server), so each route names its endpoint with
``operation_class=documented(Endpoint.…, Surface.…)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from litestar import Router
from litestar._openapi.plugin import handle_schema_path_not_found
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import BaseRoute

from gateway.requests import SPECS, Endpoint
from gateway.surfaces import Surface

__all__ = ["OPENAPI_CONFIG", "documented"]

_STRING, _INTEGER, _BOOLEAN = (
    Schema(type=OpenAPIType.STRING),
    Schema(type=OpenAPIType.INTEGER, minimum=1),
    Schema(type=OpenAPIType.BOOLEAN),
)
_OBJECT = Schema(type=OpenAPIType.OBJECT)
_MESSAGES = Schema(
    type=OpenAPIType.ARRAY,
    min_items=1,
    items=Schema(type=OpenAPIType.OBJECT, required=["role"], properties={"role": _STRING}),
)
_TEXT = Schema(
    one_of=[_STRING, Schema(type=OpenAPIType.ARRAY, min_items=1)],
    description="a string, or a non-empty array (of strings, token ids or input items)",
)
_PROMPT_SCHEMAS = {
    "messages": _MESSAGES,
    "query": _STRING,
    "tokens": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
}

_ERRORS: dict[Surface, Schema] = {
    Surface.OPENAI: Schema(
        type=OpenAPIType.OBJECT,
        required=["error"],
        properties={
            "error": Schema(
                type=OpenAPIType.OBJECT,
                required=["message", "type"],
                properties={
                    "message": _STRING,
                    "type": _STRING,
                    "param": Schema(one_of=[_STRING, Schema(type=OpenAPIType.NULL)]),
                    "code": Schema(one_of=[_STRING, Schema(type=OpenAPIType.NULL)]),
                },
            )
        },
    ),
    Surface.ANTHROPIC: Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "error"],
        properties={
            "type": Schema(const="error"),
            "error": Schema(
                type=OpenAPIType.OBJECT,
                required=["type", "message"],
                properties={"type": _STRING, "message": _STRING},
            ),
        },
    ),
    Surface.OLLAMA: Schema(
        type=OpenAPIType.OBJECT, required=["error"], properties={"error": _STRING}
    ),
}
_REFUSALS = {
    "400": "The request is malformed, or its prompt cannot fit the model's context.",
    "401": "No key, or an unknown, expired or revoked one.",
    "403": "The key may not use this model.",
    "404": "No such model.",
    "413": "The body is larger than the gateway accepts.",
    "429": "A limit of the key, or the model's queue, is full; see Retry-After.",
    "502": "The backend failed before answering.",
    "503": "No slot became free in time, or the store is unreachable; see Retry-After.",
}


def request_schema(endpoint: Endpoint) -> Schema:
    """The fields of ``endpoint``'s body that the gateway reads; all others pass through."""
    spec = SPECS[endpoint]
    properties: dict[str, Any] = {"model": Schema(type=OpenAPIType.STRING, min_length=1)}
    required = ["model"] if spec.model_required else []
    if spec.prompt is not None:
        properties[spec.prompt] = _PROMPT_SCHEMAS.get(spec.prompt, _TEXT)
        required.append(spec.prompt)
    for name in spec.max_tokens:
        properties[name] = _INTEGER
    if spec.streams:
        properties["stream"] = _BOOLEAN
    if endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS):
        properties["stream_options"] = _OBJECT
    properties["keep_alive"] = Schema(
        one_of=[_STRING, Schema(type=OpenAPIType.NUMBER)],
        description="how long to keep the model loaded after this request: 5m, 1h, 0, -1",
    )
    return Schema(
        type=OpenAPIType.OBJECT,
        required=required,
        properties=properties,
        additional_properties=True,
    )


def _responses(surface: Surface, streams: bool) -> dict[str, OpenAPIResponse | Reference]:
    media = {"application/json": OpenAPIMediaType(schema=_OBJECT)}
    if streams:
        media["text/event-stream"] = OpenAPIMediaType(schema=_STRING)
    error = {"application/json": OpenAPIMediaType(schema=_ERRORS[surface])}
    answers: dict[str, OpenAPIResponse | Reference] = {
        "200": OpenAPIResponse(description="The backend's answer, as it wrote it.", content=media)
    }
    for status, why in _REFUSALS.items():
        answers[status] = OpenAPIResponse(description=why, content=error)
    return answers


def documented(endpoint: Endpoint | None, surface: Surface) -> type[Operation]:
    """An operation class for a route that reads ``endpoint``'s body (``None``: a body the
    surface translates itself) and refuses in ``surface``'s shape."""
    body = request_schema(endpoint) if endpoint is not None else _OBJECT
    streams = endpoint is None or SPECS[endpoint].streams

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=body)}, required=True
            )
            self.responses = _responses(surface, streams)

    return DocumentedOperation


class _DocumentOnly(Router):
    """Litestar's schema router, serving the JSON document alone: Litestar also mounts a
    catch-all under it (``/openapi.json/{path}``) that answers 404 as an HTML page, where
    every refusal of the gateway is JSON in its surface's shape."""

    def register(self, value: Any) -> list[BaseRoute]:
        if getattr(value, "fn", None) is handle_schema_path_not_found:
            return []
        return super().register(value)


OPENAPI_CONFIG = OpenAPIConfig(
    title="llama-gateway",
    version=version("llama-gateway"),
    description=(
        "A gateway in front of llama.cpp llama-server runners: the OpenAI, Anthropic, Ollama "
        "and llama.cpp APIs, with keys, limits, a fair queue and slot leases."
    ),
    components=Components(
        security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", description="an API key"),
            "x-api-key": SecurityScheme(
                type="apiKey", name="x-api-key", security_scheme_in="header"
            ),
        }
    ),
    security=[{"bearer": []}, {"x-api-key": []}],
    render_plugins=[JsonRenderPlugin(path="/")],
    openapi_router=_DocumentOnly(path="/openapi.json", route_handlers=[], include_in_schema=False),
)
