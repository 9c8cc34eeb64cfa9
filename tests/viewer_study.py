"""A small imported study for viewer tests in process: three CT slices and one RGB series, a clinician granted its
data store and an outsider (tests/personas.py); and share links to it.

Builders only: tests/conftest.py registers the `viewer_data` fixture from `viewer_study_create`. It must not import
a conftest."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from imaging.models import Datastore, ImageSet
from imaging.services.datastores import datastore_create
from imaging.services.imports import import_job_start_local
from imaging.services.sharing import share_link_create
from tests import personas
from tests.dicomgen import ct_bytes
from tests.local_store import store_settings_apply
from tests.paths import DICOM_DIR


@dataclass
class ViewerData:
    datastore: Datastore
    study_uid: str
    ct_series: str
    ct_image_set: ImageSet
    clinician: Any
    outsider: Any


def ct_slice(n: int) -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    return ((x * 40 + y * 8 + n * 300) % 4096).astype(np.uint16)


def viewer_study_create(*, settings: Any, tmp_path: Path) -> ViewerData:
    """Import the study into a fresh data store under `tmp_path` (blobs and data there, imports in the calling
    thread) and make its clinician and an outsider."""
    store_settings_apply(settings, tmp_path)
    datastore = Datastore.objects.get(pk=datastore_create(client_token=generate_uid()[-30:], name="ward")["datastoreId"])
    study_uid, series = generate_uid(), generate_uid()
    folder = tmp_path / "in"
    folder.mkdir()
    for n in (3, 1, 2):  # out of order on disk: the viewer sorts by InstanceNumber
        (folder / f"s{n}.dcm").write_bytes(ct_bytes(study_uid=study_uid, series_uid=series, instance_number=n,
                                                    patient_name="DOE^JANE^MARIE", pixels=ct_slice(n)))
    (folder / "rgb.dcm").write_bytes((DICOM_DIR / "ELE__SC_rgb.dcm").read_bytes())
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    return ViewerData(datastore=datastore, study_uid=study_uid, ct_series=series,
                      ct_image_set=ImageSet.objects.get(datastore=datastore, series_instance_uid=series),
                      clinician=personas.clinician(datastore), outsider=personas.outsider())


def share_link_token(data: ViewerData, *, expires_in: timedelta = timedelta(hours=1), **options: Any) -> str:
    """A share link to the study in `data`, made by nobody in particular; returns its token."""
    _, token = share_link_create(created_by=None, datastore_id=data.datastore.id, study_uid=data.study_uid,
                                 expires_in=expires_in, **options)
    return token
