"""A small imported study for viewer tests in process: three CT slices and one RGB series, plus personas."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from pydicom.uid import generate_uid

from imaging.models import Datastore, DatastoreGrant, ImageSet
from imaging.services.datastores import datastore_create
from imaging.services.imports import import_job_start_local
from tests.conftest import DICOM_DIR
from tests.dicomgen import ct_bytes


@dataclass
class ViewerData:
    datastore: Datastore
    study_uid: str
    ct_series: str
    ct_image_set: ImageSet
    clinician: object
    outsider: object


def ct_slice(n: int) -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    return ((x * 40 + y * 8 + n * 300) % 4096).astype(np.uint16)


@pytest.fixture
def viewer_data(settings, tmp_path) -> ViewerData:
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    datastore = Datastore.objects.get(pk=datastore_create(client_token=generate_uid()[-30:], name="ward")["datastoreId"])
    study_uid, series = generate_uid(), generate_uid()
    folder = tmp_path / "in"
    folder.mkdir()
    for n in (3, 1, 2):  # out of order on disk: the viewer sorts by InstanceNumber
        (folder / f"s{n}.dcm").write_bytes(ct_bytes(study_uid=study_uid, series_uid=series, instance_number=n,
                                                    patient_name="DOE^JANE^MARIE", pixels=ct_slice(n)))
    (folder / "rgb.dcm").write_bytes((DICOM_DIR / "ELE__SC_rgb.dcm").read_bytes())
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    User = get_user_model()
    clinician = User.objects.create_user("clinician", password="correct horse battery")
    DatastoreGrant.objects.create(user=clinician, datastore=datastore)
    outsider = User.objects.create_user("outsider", password="correct horse battery")
    return ViewerData(datastore=datastore, study_uid=study_uid, ct_series=series,
                      ct_image_set=ImageSet.objects.get(datastore=datastore, series_instance_uid=series),
                      clinician=clinician, outsider=outsider)


