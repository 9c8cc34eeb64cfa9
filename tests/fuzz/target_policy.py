"""Fuzz target: the IAM-style policy evaluator (imaging.policies).

Properties: any JSON document is accepted by validate_policy or refused with a PolicyError; an accepted policy
evaluates to a bool for any action and resources; an explicit Deny covering the request always wins, whatever
else the policy allows; and adding an Allow never turns an allowed request into a refusal.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from imaging.policies import PolicyError, is_allowed, validate_policy

DENY_ALL = {"Effect": "Deny", "Action": "*", "Resource": "*"}


def evaluate(policy: Any, action: str, resources: list[str]) -> bool | None:
    """is_allowed for a valid policy; None when validate_policy refuses it (a clean validation error)."""
    try:
        validate_policy(policy)
    except PolicyError as e:
        assert str(e)
        return None
    allowed = is_allowed(policy, action=action, resources=resources)
    assert isinstance(allowed, bool)
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    if resources:
        assert not is_allowed({"Statement": [*statements, DENY_ALL]}, action=action, resources=resources), (
            "an explicit Deny of everything must win")
        covering = {"Effect": "Deny", "Action": action, "Resource": resources[0]}  # a string matches itself
        assert not is_allowed({"Statement": [covering, *statements]}, action=action, resources=resources), (
            "a Deny naming the action and resource must win")
    if allowed:
        extra = {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"}
        assert is_allowed({"Statement": [*statements, extra]}, action=action, resources=resources), (
            "adding an Allow must not refuse what was allowed")
    return allowed


def one_input(data: bytes) -> None:
    """JSON: {"policy": ..., "action": str, "resources": [str]}, or any other JSON taken as the policy."""
    try:
        document = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return
    action, resources = "medical-imaging:GetDatastore", ["arn:aws:medical-imaging:us-east-1:1:datastore/" + "a" * 32]
    if isinstance(document, dict) and "policy" in document:
        if isinstance(document.get("action"), str):
            action = document["action"]
        if isinstance(document.get("resources"), list) and all(isinstance(r, str) for r in document["resources"]):
            resources = document["resources"]
        document = document["policy"]
    evaluate(document, action, resources)


def seed_inputs() -> Iterable[bytes]:
    from imaging.policies import MANAGED_POLICIES

    for policy in MANAGED_POLICIES.values():
        yield json.dumps(policy).encode()
    yield json.dumps({"policy": {"Statement": [
        {"Effect": "Allow", "NotAction": "medical-imaging:Delete*", "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:Get*", "NotResource": "arn:*:datastore/a*",
         "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]},
        "action": "medical-imaging:GetImageSet",
        "resources": ["arn:aws:medical-imaging:us-east-1:1:datastore/b"]}).encode()
