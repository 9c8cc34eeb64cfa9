"""Hypothesis settings and strategies shared by the fuzz tests (bounded, derandomized runs for CI)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz import seeds


def bounded(examples: int):
    """Deterministic and bounded: the same examples on every run, no example database, no per-example deadline
    (the machine is shared; a hang would still show as a test that does not finish)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def require_seeds():
    if not seeds.seed_paths():
        pytest.skip(f"no seed DICOM files in {seeds.SHARED_DICOM}")


@st.composite
def mutated_files(draw):
    """(seed name, mutation number, bytes) of a real file mutated by seeds.mutate."""
    path = draw(st.sampled_from(seeds.seed_paths()))
    number = draw(st.integers(min_value=0, max_value=2**31 - 1))
    return path.name, number, seeds.mutate(seeds.seed_bytes(path.name), number)


json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
