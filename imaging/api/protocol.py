"""The rest-json wire protocol, driven by botocore's own `medical-imaging` model.

The model is the final word on shapes, so requests are parsed and validated from it rather than from a hand-kept
copy: which member comes from the path, the query string, a header or the body; its type; and its constraints
(required, min/max, pattern, enum, union). Responses are plain dicts with wire names; `to_wire` drops absent
members and turns datetimes into epoch seconds with millisecond fractions.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from imaging.errors import ValidationFailed

MAX_VALIDATION_ERRORS = 10


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("medical-imaging")


def operation_model(name: str) -> OperationModel:
    return service_model().operation_model(name)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    # Model patterns are Java regexes; \p{ASCII} is the only construct Python spells differently.
    return re.compile(pattern.replace(r"\p{ASCII}", r"[\x00-\x7f]"), re.DOTALL)


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 100 else text[:100] + "..."


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, value: Any, shape: Shape, rule: str) -> None:
        if shape.metadata.get("sensitive"):
            self.items.append(f"Value at '{path}' failed to satisfy constraint: {rule}")
        else:
            self.items.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: {rule}")

    def missing(self, path: str) -> None:
        self.items.append(f"Value null at '{path}' failed to satisfy constraint: Member must not be null")

    def raise_if_any(self) -> None:
        if self.items:
            shown = self.items[:MAX_VALIDATION_ERRORS]
            noun = "error" if len(self.items) == 1 else "errors"
            raise ValidationFailed(f"{len(self.items)} validation {noun} detected: " + "; ".join(shown))


def _validate(shape: Shape, value: Any, path: str, errors: _Errors) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            errors.add(path, value, shape, "Member must be a structure")
            return
        members = shape.members
        if meta.get("union"):
            present = [key for key in members if value.get(key) is not None]
            if len(present) != 1:
                errors.items.append(f"Value at '{path}' failed to satisfy constraint: Member must have exactly one member set")
        for name in shape.required_members:
            if value.get(name) is None:
                errors.missing(f"{path}.{name}" if path else name)
        for name, member_shape in members.items():
            if value.get(name) is not None:
                _validate(member_shape, value[name], f"{path}.{name}" if path else name, errors)
    elif kind == "list":
        if not isinstance(value, list):
            errors.add(path, value, shape, "Member must be a list")
            return
        _check_size(len(value), shape, path, value, errors, "Member must have length")
        for index, item in enumerate(value):
            if item is None:
                errors.missing(f"{path}.{index + 1}")
            else:
                _validate(shape.member, item, f"{path}.{index + 1}", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.add(path, value, shape, "Member must be a map")
            return
        _check_size(len(value), shape, path, value, errors, "Member must have length")
        for key, item in value.items():
            _validate(shape.key, key, f"{path}.key", errors)
            if item is None:
                errors.missing(f"{path}.{key}")
            else:
                _validate(shape.value, item, f"{path}.{key}", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.add(path, value, shape, "Member must be a string")
            return
        _check_size(len(value), shape, path, value, errors, "Member must have length")
        if "enum" in meta and value not in meta["enum"]:
            errors.add(path, value, shape, f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
        if "pattern" in meta and not _compiled(meta["pattern"]).fullmatch(value):
            errors.add(path, value, shape, f"Member must satisfy regular expression pattern: {meta['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.add(path, value, shape, "Member must be an integer")
            return
        if "min" in meta and value < meta["min"]:
            errors.add(path, value, shape, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.add(path, value, shape, f"Member must have value less than or equal to {meta['max']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.add(path, value, shape, "Member must be a boolean")
    elif kind == "timestamp":
        if not isinstance(value, datetime):
            errors.add(path, value, shape, "Member must be a timestamp in epoch seconds")
    elif kind == "blob":
        if not isinstance(value, (bytes, bytearray)):
            errors.add(path, value, shape, "Member must be base64-encoded binary data")
        else:
            _check_size(len(value), shape, path, "<binary>", errors, "Member must have length")


def _check_size(size: int, shape: Shape, path: str, value: Any, errors: _Errors, rule: str) -> None:
    meta = shape.metadata
    if "min" in meta and size < meta["min"]:
        errors.add(path, value, shape, f"{rule} greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        errors.add(path, value, shape, f"{rule} less than or equal to {meta['max']}")


def _coerce_json(shape: Shape, value: Any) -> Any:
    """Turn JSON wire values into Python values: base64 blobs into bytes, epoch numbers into datetimes.

    Values of the wrong JSON type are passed through unchanged so that validation reports them.
    """
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure" and isinstance(value, dict):
        return {key: _coerce_json(shape.members[key], item) for key, item in value.items() if key in shape.members}
    if kind == "list" and isinstance(value, list):
        return [_coerce_json(shape.member, item) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {key: _coerce_json(shape.value, item) for key, item in value.items()}
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
    if kind == "timestamp" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return value
    return value


def _coerce_text(shape: Shape, raw: str) -> Any:
    """Query-string and header values arrive as text."""
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


def parse_request(
    operation: OperationModel, *, labels: dict[str, str], query, headers, body: bytes
) -> dict[str, Any]:
    """Build and validate the operation's input from the HTTP request; raises ValidationFailed."""
    shape = operation.input_shape
    params: dict[str, Any] = {}
    if shape is None:
        return params
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if wire_name in labels:
                params[name] = labels[wire_name]
        elif location == "querystring":
            if member.type_name == "list":
                values = query.getlist(wire_name)
                if values:
                    params[name] = [_coerce_text(member.member, v) for v in values]
            elif wire_name in query:
                params[name] = _coerce_text(member, query.get(wire_name))
        elif location == "header":
            if wire_name in headers:
                params[name] = _coerce_text(member, headers[wire_name])
        else:
            body_members[name] = member

    payload_name = shape.serialization.get("payload")
    if payload_name:
        member = shape.members[payload_name]
        if member.type_name == "blob":
            params[payload_name] = body
        elif body.strip():
            params[payload_name] = _coerce_json(member, _load_json(body))
        elif payload_name in shape.required_members or member.type_name == "structure":
            # botocore sends an empty body for an empty payload structure, e.g. SearchImageSets with no criteria.
            params[payload_name] = {} if member.type_name == "structure" and not member.required_members else None
    elif body_members:
        document = _load_json(body) if body.strip() else {}
        if not isinstance(document, dict):
            raise ValidationFailed("The request body must be a JSON object")
        for key, value in document.items():
            # Unknown members are ignored, so newer clients that send new optional members keep working.
            if key in body_members:
                params[key] = _coerce_json(body_members[key], value)

    params = {key: value for key, value in params.items() if value is not None}
    errors = _Errors()
    _validate(shape, params, "", errors)
    errors.raise_if_any()
    return params


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValidationFailed("The request body is not valid JSON") from e


def epoch(value: datetime) -> float:
    return round(value.timestamp(), 3)


def to_wire(value: Any) -> Any:
    """Plain response data for JSON: drop None members, datetimes to epoch seconds."""
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [to_wire(item) for item in value]
    if isinstance(value, datetime):
        return epoch(value)
    return value
