"""Fuzzing what clients send besides DICOM files: DICOM JSON metadata, SigV4 headers, policies (issue 11 item 12).
No database; see tests/fuzz/target_*.py for the properties."""
from __future__ import annotations

import json

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from tests.fuzz import seeds, target_dicomjson, target_policy, target_sigv4
from tests.fuzz.strategies import bounded, json_values, require_seeds

pytestmark = pytest.mark.fuzz

# --- DICOM JSON ---

attributes = st.fixed_dictionaries({"vr": st.sampled_from(["PN", "IS", "DS", "US", "FD", "AT", "SQ", "OB", "LO",
                                                           "XX", 7]) | json_values},
                                   optional={"Value": json_values, "InlineBinary": json_values,
                                             "BulkDataURI": st.text(max_size=5)})
dicom_json = st.dictionaries(st.text("0123456789ABCDEFabcdefg", min_size=7, max_size=9), attributes, max_size=6)


@bounded(300)
@given(json_values | dicom_json)
def test_any_json_converts_or_is_refused_with_a_reason(document):
    target_dicomjson.convert(document)


text = st.text(st.characters(codec="latin-1", exclude_characters="\\\x00"), max_size=12).map(str.strip)
# (keyword, VR, strategy of values as pydicom holds them): one per kind of VR that DICOM JSON shapes differently.
ELEMENTS = [
    ("PatientName", "PN", st.lists(st.sampled_from(["DOE^JANE", "SMITH^J^^DR", "A=B", "^X"]), max_size=2)),
    ("InstanceNumber", "IS", st.lists(st.integers(-10**6, 10**6).map(str), max_size=2)),
    ("SliceThickness", "DS", st.lists(st.sampled_from(["1", "0.5", "-2.25", "1e3", "12.0"]), max_size=3)),
    ("Rows", "US", st.lists(st.integers(0, 65535), max_size=2)),
    ("FrameTime", "DS", st.lists(st.sampled_from(["33.3", "40"]), max_size=1)),
    ("ImagerPixelSpacing", "DS", st.lists(st.sampled_from(["0.1", "0.2"]), min_size=2, max_size=2)),
    ("StudyDescription", "LO", st.lists(text, max_size=2)),
    ("Modality", "CS", st.lists(st.sampled_from(["CT", "MR", "OT"]), max_size=1)),
    ("ReferencedFrameNumber", "IS", st.lists(st.integers(1, 99).map(str), max_size=3)),
    ("FrameIncrementPointer", "AT", st.lists(st.sampled_from([0x00181063, 0x00181065]), max_size=2)),
    ("EncapsulatedDocument", "OB", st.binary(max_size=16)),
    ("ExposureIndex", "DS", st.lists(st.sampled_from(["100", "2.5"]), max_size=1)),
    ("ReferencedSOPClassUID", "UI", st.lists(st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.3"]), max_size=1)),
    ("PixelSpacingCalibrationDescription", "LO", st.lists(text, max_size=1)),
    ("RecommendedDisplayFrameRateInFloat", "FL", st.lists(st.sampled_from([0.5, 25.0, -1.0]), max_size=1)),
]


@st.composite
def datasets(draw, depth: int = 0):
    dataset = Dataset()
    for keyword, vr, values in draw(st.lists(st.sampled_from(ELEMENTS), max_size=8, unique_by=lambda e: e[0])):
        value = draw(values)
        setattr(dataset, keyword, value)
    if depth < 2 and draw(st.booleans()):
        dataset.ReferencedImageSequence = draw(st.lists(datasets(depth + 1), max_size=2))
    return dataset


@bounded(200)
@given(datasets())
def test_dicom_json_and_a_p10_file_saying_the_same_give_the_same_values(dataset):
    from_file, from_json = target_dicomjson.normalized_both_ways(dataset)
    assert target_dicomjson.differences(from_file, from_json) == []


def test_the_shared_files_as_dicom_json_give_the_values_of_the_files():
    require_seeds()
    compared = 0
    for path in seeds.seed_paths(None):
        dataset = pydicom.dcmread(path, force=True)
        try:
            from_file, from_json = target_dicomjson.normalized_both_ways(dataset)
        except Exception:  # pydicom cannot write this one as JSON (a value it rejects); not ours to judge
            continue
        assert target_dicomjson.differences(from_file, from_json) == [], path.name
        compared += 1
    assert compared > 30


# --- SigV4 ---

header_text = st.text(st.characters(codec="latin-1"), max_size=300)
authorization = st.one_of(
    header_text,
    st.builds(lambda cred, signed, sig, space: f"AWS4-HMAC-SHA256{space}Credential={cred}, SignedHeaders={signed}, "
                                               f"Signature={sig}",
              st.lists(st.text(st.characters(codec="latin-1", exclude_characters=", /"), max_size=12),
                       max_size=6).map("/".join),
              st.lists(st.sampled_from(["host", "x-amz-date", "x-amz-content-sha256", "content-type", "", "X"]),
                       max_size=4).map(";".join),
              st.text("0123456789abcdef", min_size=63, max_size=65),
              st.sampled_from([" ", "\t", "  ", ""])),
)


@bounded(400)
@given(authorization, st.sampled_from(["20240501T120000Z", "20240501T1200", "", "99991231T235959Z"]) | header_text,
       header_text, header_text, header_text, st.sampled_from(["GET", "POST", "", "get"]))
def test_sigv4_headers_are_accepted_or_refused_with_an_aws_error(auth, amz_date, host, path, query, method):
    headers = {"authorization": auth, "x-amz-date": amz_date, "host": host}
    target_sigv4.check_request(headers, method=method, raw_path=path, query=query)


@bounded(100)
@given(st.binary(max_size=400))
def test_sigv4_target_on_raw_bytes(data):
    target_sigv4.one_input(data)


# --- Policies ---

patterns = st.text("*?ab:-/medical-imagingDG", max_size=24)
statements = st.fixed_dictionaries(
    {"Effect": st.sampled_from(["Allow", "Deny", "allow", None])},
    optional={"Action": patterns | st.lists(patterns, max_size=3) | json_values,
              "NotAction": patterns | st.lists(patterns, max_size=3),
              "Resource": patterns | st.lists(patterns, max_size=3) | json_values,
              "NotResource": patterns | st.lists(patterns, max_size=3),
              "Condition": json_values, "Sid": json_values})
policies = st.one_of(json_values, st.fixed_dictionaries({"Statement": st.lists(statements, max_size=4) | statements}))


@bounded(400)
@given(policies, patterns, st.lists(patterns, min_size=1, max_size=3))
def test_policies_evaluate_to_a_bool_or_a_validation_error_and_deny_wins(policy, action, resources):
    target_policy.evaluate(policy, action, resources)


@bounded(100)
@given(st.binary(max_size=300))
def test_policy_target_on_raw_bytes(data):
    target_policy.one_input(data)


def test_the_fuzz_targets_take_their_own_seeds():
    for target in (target_dicomjson, target_sigv4, target_policy):
        for data in target.seed_inputs():
            target.one_input(data)
    assert json.loads(next(iter(target_dicomjson.seed_inputs())))


@bounded(500)
@given(st.text("ab*?", max_size=8), st.text("ab*?", max_size=8))
def test_wildcards_match_as_the_regular_expression_they_stand_for(pattern, value):
    import re

    from imaging.policies import wildcard_match

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    assert wildcard_match(pattern, value) == bool(re.fullmatch(regex, value, re.DOTALL))


def test_a_policy_of_many_wildcards_is_evaluated_without_backtracking():
    """Found while writing the policy target: the regular expression built from `*a*a...*b` backtracked
    exponentially (42 s for 10 stars against 40 characters; this one would outlast any test run)."""
    from imaging.policies import is_allowed

    policy = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*a" * 30 + "*b"}]}
    assert not is_allowed(policy, action="medical-imaging:GetDatastore", resources=["a" * 200])
    assert is_allowed(policy, action="medical-imaging:GetDatastore", resources=["a" * 200 + "b"])
