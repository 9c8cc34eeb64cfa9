"""IAM-style policy evaluation (SPEC 12.3), without Django.

An explicit Deny in any matching statement refuses; otherwise an Allow must match the action and every required
resource; otherwise the default is deny. Action and resource patterns use `*` and `?` wildcards; actions match
case-insensitively. Conditions are evaluated fail-closed: a statement whose condition cannot be evaluated never
grants, and a Deny with such a condition still denies.
"""
from __future__ import annotations

from typing import Any, Iterable

SERVICE_PREFIX = "medical-imaging"

READ_ONLY_ACTIONS = [
    "GetDatastore",
    "ListDatastores",
    "GetDICOMImportJob",
    "ListDICOMImportJobs",
    "SearchImageSets",
    "GetImageSet",
    "GetImageSetMetadata",
    "GetImageFrame",
    "ListImageSetVersions",
    "ListTagsForResource",
    "SearchDICOMStudies",
    "SearchDICOMSeries",
    "SearchDICOMInstances",
    "GetDICOMStudy",
    "GetDICOMSeries",
    "GetDICOMInstance",
    "GetDICOMStudyMetadata",
    "GetDICOMInstanceMetadata",
    "GetDICOMInstanceFrames",
    "GetDICOMSeriesMetadata",
    "GetDICOMBulkdata",
    "GetDICOMRendered",
    "GetDICOMThumbnail",
]

MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "AWSHealthImagingFullAccess": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"}],
    },
    "AWSHealthImagingReadOnlyAccess": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [f"{SERVICE_PREFIX}:{action}" for action in READ_ONLY_ACTIONS],
                "Resource": "*",
            }
        ],
    },
}


class PolicyError(ValueError):
    """The policy document is malformed."""


def wildcard_match(pattern: str, value: str) -> bool:
    """IAM wildcard matching: `*` any run of characters, `?` one character, the rest literal.

    Greedy matching that returns to the last `*` on a mismatch: at most len(pattern) x len(value) steps. A regular
    expression built from the pattern (as this module once did) backtracks exponentially on patterns like
    `*a*a*a*a*a*a*a*a*a*a*b`: one such policy took 42 s to evaluate against a 40-character resource.
    """
    if "?" not in pattern:  # the shapes policies are written in, decided without the loop (every call asks)
        stars = pattern.count("*")
        if stars == 0:
            return pattern == value
        if stars == 1 and pattern[-1] == "*":
            return value.startswith(pattern[:-1])
    p = v = 0
    star, resume = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, v
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == value[v]):
            p += 1
            v += 1
        elif star >= 0:
            resume += 1
            p, v = star + 1, resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise PolicyError("Action and Resource must be a string or a list of strings")


def _matches_any(patterns: Iterable[str], value: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        value = value.lower()
        return any(wildcard_match(pattern.lower(), value) for pattern in patterns)
    return any(wildcard_match(pattern, value) for pattern in patterns)


def validate_policy(document: Any) -> None:
    if not isinstance(document, dict) or not isinstance(document.get("Statement"), (list, dict)):
        raise PolicyError("A policy is an object with a Statement list")
    statements = document["Statement"]
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("Each statement needs Effect Allow or Deny")
        if ("Action" in statement) == ("NotAction" in statement):
            raise PolicyError("Each statement needs exactly one of Action and NotAction")
        if ("Resource" in statement) == ("NotResource" in statement):
            raise PolicyError("Each statement needs exactly one of Resource and NotResource")
        for member in ("Action", "NotAction", "Resource", "NotResource"):
            _as_list(statement.get(member))


def _statement_covers(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        action_ok = _matches_any(_as_list(statement["Action"]), action, ignore_case=True)
    else:
        action_ok = not _matches_any(_as_list(statement["NotAction"]), action, ignore_case=True)
    if not action_ok:
        return False
    if "Resource" in statement:
        return _matches_any(_as_list(statement["Resource"]), resource, ignore_case=False)
    return not _matches_any(_as_list(statement["NotResource"]), resource, ignore_case=False)


def is_allowed(document: dict[str, Any], *, action: str, resources: list[str]) -> bool:
    """Whether `document` allows `action` (e.g. "medical-imaging:GetDatastore") on every resource."""
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for resource in resources:
        allowed = False
        for statement in statements:
            if not _statement_covers(statement, action, resource):
                continue
            if statement["Effect"] == "Deny":
                return False
            if "Condition" not in statement:
                allowed = True
        if not allowed:
            return False
    return True
