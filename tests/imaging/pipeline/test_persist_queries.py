"""Persisting a job (imaging/pipeline/persist.py) costs the same number of queries whatever its number of instances:
rows are written per image set, frames in bulk. Checked for new image sets and for merges into existing ones, on
whichever database the run uses (SQLite by default, PostgreSQL with DATABASE_URL)."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from imaging.models import ImageFrame, ImageSet
from imaging.pipeline import job as job_module
from imaging.services.imports import import_job_start_local
from tests.dicomgen import ct_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def persist_queries(monkeypatch) -> list[int]:
    """The number of queries of each persist_instances call made by the jobs run in the test."""
    counts: list[int] = []
    original = job_module.persist_instances

    def counting(**kwargs):
        with CaptureQueriesContext(connection) as queries:
            summaries = original(**kwargs)
        counts.append(len(queries))
        return summaries

    monkeypatch.setattr(job_module, "persist_instances", counting)
    return counts


def import_series(datastore, folder: Path, *, study: str, series: str, first: int, count: int) -> None:
    folder.mkdir(parents=True)
    for n in range(first, first + count):
        (folder / f"{n:03}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n, seed=n,
                                                      rows=16, columns=16))
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    job.refresh_from_db()
    assert job.status == "COMPLETED", job.message


def test_queries_do_not_grow_with_the_instances_of_a_new_image_set(datastore, tmp_path, persist_queries):
    import_series(datastore, tmp_path / "small", study=generate_uid(), series=generate_uid(), first=0, count=2)
    import_series(datastore, tmp_path / "large", study=generate_uid(), series=generate_uid(), first=0, count=40)
    small, large = persist_queries
    assert large == small
    assert ImageFrame.objects.filter(image_set__datastore=datastore).count() == 42


def test_queries_do_not_grow_with_the_instances_merged_into_an_image_set(datastore, tmp_path, persist_queries):
    study, series = generate_uid(), generate_uid()
    import_series(datastore, tmp_path / "first", study=study, series=series, first=0, count=2)
    import_series(datastore, tmp_path / "two-more", study=study, series=series, first=2, count=2)
    import_series(datastore, tmp_path / "forty-more", study=study, series=series, first=4, count=40)
    _, small_merge, large_merge = persist_queries
    assert large_merge == small_merge
    image_set = ImageSet.objects.get(datastore=datastore)
    assert image_set.latest_version == 3 and image_set.frames.count() == 44
