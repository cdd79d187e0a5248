"""The OpenAPI 3.1 document of the management API (``GET /api/openapi.json``), generated
from the operations and the pydantic models that validate and render their bodies.
Clients and schemathesis read it; its links let stateful tests follow what a creating
operation made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hamn.http.management import models as m
from hamn.http.management.operation import OPENAPI_PATH, Operation

# 429: repeated failed sign-ins from one address or for one user (Retry-After says when).
_ERROR_STATUSES = (400, 401, 403, 404, 409, 429)
_PATH_PARAMETER = re.compile(r"{(\w+)}")


def _links(op: Operation, operations: Sequence[Operation]) -> dict[str, Any]:
    """OpenAPI links from a creating operation to those on what it made (clients and
    schemathesis' stateful tests follow them)."""
    if op.creates is None:
        return {}
    param, pointer = op.creates
    made = f"{op.path}/{{{param}}}"
    known = {p: f"$request.path.{p}" for p in _PATH_PARAMETER.findall(op.path)}
    known[param] = f"$response.body#{pointer}"
    links: dict[str, Any] = {}
    for other in operations:
        needed = _PATH_PARAMETER.findall(other.path)
        if (other.path == made or other.path.startswith(made + "/")) and set(needed) <= set(known):
            links[other.operation_id] = {
                "operationId": other.operation_id,
                "parameters": {p: known[p] for p in needed},
            }
    return links


def openapi_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """OpenAPI 3.1 for ``operations``; every schema comes from the pydantic models."""
    models: list[tuple[type[BaseModel], Any]] = [(m.ErrorBody, "serialization")]
    for op in operations:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.answer is not None:
            models.append((op.answer, "serialization"))
    refs, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
    error = {
        "description": "an error: the registered code, what to do, and what was wrong",
        "content": {"application/json": {"schema": refs[(m.ErrorBody, "serialization")]}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters: list[dict[str, Any]] = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for n in _PATH_PARAMETER.findall(op.path)
        ]
        parameters += [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in op.query
        ]
        success: dict[str, Any] = {"description": "done"}
        if op.answer is not None:
            schema = refs[(op.answer, "serialization")]
            success["content"] = {"application/json": {"schema": schema}}
        links = _links(op, operations)
        if links:
            success["links"] = links
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "description": f"Needs: {op.needs}.",
            "responses": {str(op.status): success, **{str(s): error for s in _ERROR_STATUSES}},
        }
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hamn management API",
            "version": "1",
            "description": "Registries, credentials, usage, scope maps, tokens, role "
            "assignments, users and service principals, in ACR's shapes.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
