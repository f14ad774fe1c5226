"""Checking a Django test response against the API's OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from django.urls import URLPattern, URLResolver, get_resolver

from orders.openapi import document

CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def api_routes() -> dict[str, Any]:
    """Every route under /api/ in Django's resolver, in OpenAPI's spelling, with its view."""
    routes: dict[str, Any] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                path = "/" + CONVERTER.sub(r"{\1}", prefix + str(pattern.pattern))
                # /api/docs/ is the document's HTML page for people, not an operation.
                if path.startswith("/api/") and not getattr(pattern.callback, "documentation_page", False):
                    routes[path] = pattern.callback

    walk(get_resolver().url_patterns, "")
    return routes


def _validate(instance: Any, schema: dict[str, Any], doc: dict[str, Any], what: str) -> None:
    # The document's components ride along so that "#/components/..." resolves.
    rooted = {**schema, "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(rooted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{what} breaks the schema: " + "; ".join(
        f"{list(e.path)}: {e.message[:300]}" for e in errors[:5]
    )


def _resolve(item: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = doc
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = {**node, **{k: v for k, v in item.items() if k != "$ref"}}
    return item


def operation(path: str, method: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = doc or document()
    return doc["paths"][path][method.lower()]


def check_response(response: Any, path: str, method: str, doc: dict[str, Any] | None = None) -> Any:
    """Assert the status is documented for the operation, the headers it documents as
    required are there and match, and the body matches the schema of its content type.
    Returns the parsed body (JSON) or the bytes (other types)."""
    doc = doc or document()
    op = operation(path, method, doc)
    status = str(response.status_code)
    assert status in op["responses"], f"{method} {path}: status {status} is not documented ({response.content[:200]!r})"
    spec = _resolve(op["responses"][status], doc)
    for name, header in spec.get("headers", {}).items():
        header = _resolve(header, doc)
        if name not in response.headers:
            assert not header.get("required"), f"{method} {path} {status}: header {name} is missing"
            continue
        _validate(response.headers[name], header["schema"], doc, f"{method} {path} {status} header {name}")
    content = spec.get("content", {})
    if not content:
        assert not response.content, f"{method} {path} {status}: a body where none is documented"
        return None
    media_type = response["Content-Type"].split(";")[0].strip()
    assert media_type in content, f"{method} {path} {status}: Content-Type {media_type} is not documented"
    if media_type != "application/json":
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return body
    body = response.json()
    _validate(body, content[media_type]["schema"], doc, f"{method} {path} {status} body")
    return body


def documented_statuses(path: str, method: str, doc: dict[str, Any] | None = None) -> set[int]:
    return {int(status) for status in operation(path, method, doc)["responses"]}


def documented_error_codes(path: str, method: str, doc: dict[str, Any] | None = None) -> set[tuple[int, str]]:
    """(status, code) for every error code the operation documents."""
    doc = doc or document()
    pairs = set()
    for status, response in operation(path, method, doc)["responses"].items():
        schema = _resolve(response, doc).get("content", {}).get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", []):
            code = part.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
            pairs.update((int(status), name) for name in code.get("enum", []))
    return pairs
