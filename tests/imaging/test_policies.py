"""IAM-style policy evaluation: wildcards, NotAction, explicit deny wins, default deny."""
from __future__ import annotations

import pytest

from imaging.policies import MANAGED_POLICIES, PolicyError, is_allowed, validate_policy

DS = "arn:aws:medical-imaging:us-east-1:000000000000:datastore/" + "a" * 32
OTHER = "arn:aws:medical-imaging:us-east-1:000000000000:datastore/" + "b" * 32


def test_managed_full_access_allows_everything():
    assert is_allowed(MANAGED_POLICIES["AWSHealthImagingFullAccess"], action="medical-imaging:DeleteDatastore",
                      resources=[DS])


@pytest.mark.parametrize("action, allowed", [("GetDatastore", True), ("ListDatastores", True),
                                             ("CreateDatastore", False), ("TagResource", False),
                                             ("UpdateImageSetMetadata", False), ("GetImageFrame", True)])
def test_managed_read_only(action, allowed):
    policy = MANAGED_POLICIES["AWSHealthImagingReadOnlyAccess"]
    assert is_allowed(policy, action=f"medical-imaging:{action}", resources=[DS]) is allowed


def test_wildcards_and_explicit_deny():
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:Get*", "Resource": "arn:aws:medical-imaging:*:*:datastore/*"},
        {"Effect": "Deny", "Action": "medical-imaging:*", "Resource": OTHER},
    ]}
    assert is_allowed(policy, action="medical-imaging:getdatastore", resources=[DS])
    assert not is_allowed(policy, action="medical-imaging:GetDatastore", resources=[OTHER])
    assert not is_allowed(policy, action="medical-imaging:DeleteDatastore", resources=[DS])
    assert not is_allowed(policy, action="medical-imaging:GetDatastore", resources=[DS, OTHER])


def test_not_action_and_conditions_fail_closed():
    policy = {"Statement": [
        {"Effect": "Allow", "NotAction": "medical-imaging:Delete*", "Resource": "*"},
        {"Effect": "Allow", "Action": "medical-imaging:DeleteDatastore", "Resource": "*",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
    ]}
    assert is_allowed(policy, action="medical-imaging:GetDatastore", resources=[DS])
    assert not is_allowed(policy, action="medical-imaging:DeleteDatastore", resources=[DS])


@pytest.mark.parametrize("document", [None, {}, {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]},
                                      {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
                                      {"Statement": [{"Effect": "Allow", "Action": 5, "Resource": "*"}]}])
def test_malformed_policies_are_rejected(document):
    with pytest.raises(PolicyError):
        validate_policy(document)


@pytest.mark.parametrize("pattern, value, expected", [
    ("medical-imaging:GetImageFrame", "medical-imaging:GetImageFrame", True),
    ("medical-imaging:GetImageFrame", "medical-imaging:GetImageFrames", False),
    ("medical-imaging:Get*", "medical-imaging:GetImageFrame", True),
    ("medical-imaging:Get*", "medical-imaging:Get", True),
    ("medical-imaging:Get*", "medical-imaging:ListDatastores", False),
    ("*", "", True), ("", "", True), ("", "x", False),
    ("*Frame", "medical-imaging:GetImageFrame", True), ("*Frame", "medical-imaging:GetImageSet", False),
    ("a*b*", "axxbyy", True), ("a*b*", "axxcyy", False), ("Get?mage*", "GetImageFrame", True),
])
def test_wildcard_shapes_with_and_without_the_fast_path(pattern, value, expected):
    from imaging.policies import wildcard_match

    assert wildcard_match(pattern, value) is expected
