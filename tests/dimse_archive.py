"""DIMSE retrieve tests' archive: a few files of ../shared/dicom and a generated three-slice CT series imported into
an ACTIVE data store in process; and a dcmtk `storescp` on a free port as a destination. Builders only: the
fixtures are registered by tests/imaging/dimse/conftest.py."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelGet

from imaging.dimse.outgoing import instances_resolve, retrieve_request_parse
from imaging.services.imports import import_job_start_local
from imaging.services.wado import wado_caches_clear
from tests.dicomgen import ct_dataset, to_bytes
from tests.dimse import dcmtk
from tests.local_store import local_datastore_create
from tests.paths import DICOM_DIR
from tests.servers import free_port

FILES = {"ct": "ELE__CT_small.dcm", "mr": "ILE__MR_small_implicit.dcm", "multiframe": "ELE__emri_small.dcm",
         "rgb": "ELE__SC_rgb.dcm", "jpeg": "JPEG50__SC_rgb_jpeg_dcmtk.dcm", "rtplan": "ILE__rtplan.dcm"}


class Archive:
    """The imported data store, the originals by name, and the generated series' study, series and slices."""

    def __init__(self, datastore, study: str, series: str, generated: dict[int, Dataset]) -> None:
        self.datastore = datastore
        self.study, self.series, self.generated = study, series, generated
        self.sources = {name: pydicom.dcmread(DICOM_DIR / file) for name, file in FILES.items()}

    def resolve(self, *, model: str = PatientRootQueryRetrieveInformationModelGet, **keys):
        identifier = Dataset()
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
        return instances_resolve(datastore_id=self.datastore.id,
                                 request=retrieve_request_parse(identifier, model=model))

    def original(self, sop_uid: str) -> Dataset:
        for dataset in [*self.sources.values(), *self.generated.values()]:
            if dataset.SOPInstanceUID == sop_uid:
                return dataset
        raise KeyError(sop_uid)


def archive_build(tmp_path: Path, *, files: dict[str, str] | None = None) -> Archive:
    wado_caches_clear()
    datastore = local_datastore_create()
    folder = tmp_path / "in"
    folder.mkdir()
    for file in (files or FILES).values():
        (folder / file).write_bytes((DICOM_DIR / file).read_bytes())
    study, series = generate_uid(), generate_uid()
    generated = {}
    for number in (3, 1, 2):
        dataset = ct_dataset(study_uid=study, series_uid=series, instance_number=number, seed=number)
        generated[number] = dataset
        (folder / f"slice{number}.dcm").write_bytes(to_bytes(dataset))
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    return Archive(datastore, study, series, generated)


class StoreSCP:
    """dcmtk `storescp` writing what it receives to `folder`, under AE title `ae_title`, on a free port. dcmtk 3.6.7
    knows no HTJ2K: it accepts the uncompressed syntaxes only, so what Aperture sends it is transcoded."""

    def __init__(self, folder: Path, *, ae_title: str = "DEST", tls: tuple[str, ...] = ()) -> None:
        """`tls`: storescp's TLS options (`+tls KEY CERT +cf CA`), for a destination that speaks DICOM TLS."""
        self.folder, self.ae_title, self.port = folder, ae_title, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([dcmtk("storescp"), "-aet", ae_title, *tls,
                                         "-od", str(folder), str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"storescp did not start: {self.process.stderr.read().decode(errors='replace')[-500:]}")

    def received(self) -> dict[str, pydicom.Dataset]:
        """What arrived, by SOP Instance UID."""
        return {dataset.SOPInstanceUID: dataset
                for dataset in (pydicom.dcmread(path) for path in sorted(self.folder.iterdir()) if path.is_file())}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
