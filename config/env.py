"""Small typed readers for settings that come from the environment.

A bad value fails at start-up with a message that names the variable, so a typo in a deployment
never turns into a confusing error at request time.
"""
from __future__ import annotations

import os
import re

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from e
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_origins(name: str) -> list[str]:
    """A comma-separated list of web origins, each exactly `scheme://host[:port]` (http or https, no path and no
    wildcard), lower-cased."""
    origins = []
    for item in (entry.rstrip("/") for entry in env_list(name)):
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", item) or item.count("://") != 1:
            raise ImproperlyConfigured(f"{name} must list origins like https://viewer.example.org:8443, not {item!r}")
        origins.append(item.lower())
    return origins


def env_pattern(name: str, default: str, pattern: str, description: str) -> str:
    value = os.environ.get(name) or default
    if not re.fullmatch(pattern, value):
        raise ImproperlyConfigured(f"{name} must be {description}, not {value!r}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_mapping(name: str, value_pattern: str, description: str) -> dict[str, str]:
    """`key=value,key=value`, each value matching `value_pattern`."""
    raw = os.environ.get(name, "")
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, separator, value = item.partition("=")
        if not separator or not key.strip() or not re.fullmatch(value_pattern, value.strip()):
            raise ImproperlyConfigured(f"{name} must be key=value pairs with values of {description}, not {item!r}")
        mapping[key.strip()] = value.strip()
    return mapping
