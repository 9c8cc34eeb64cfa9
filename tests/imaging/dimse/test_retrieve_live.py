"""C-GET and C-MOVE as dcmtk sees them: `getscu` and `movescu` against the live listener, with dcmtk `storescp`
(registered as a DICOM node) as the move destination, at study and series level; what arrives is compared with
the originals bit for bit. dcmtk 3.6.7 knows no HTJ2K, so every instance is transcoded to an uncompressed syntax.
A move to an unknown destination fails with 0xA801; the audit has one event per retrieve."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.dicomgen import ct_dataset, to_bytes
from tests.dimse import DicomListener, dcmtk, orm
from tests.dimse_archive import StoreSCP
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

AE = "RETR1"
SHARED = {"ct": "ELE__CT_small.dcm", "mr": "ILE__MR_small_implicit.dcm", "multiframe": "ELE__emri_small.dcm"}


@pytest.fixture(scope="module")
def server():
    instance = ApertureServer().start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def originals(server, tmp_path_factory):
    """A data store called RETR1 holding a generated three-slice CT series and a few shared files, imported in a
    `manage.py shell` of the server's own database and blob store. The originals by SOP Instance UID."""
    folder = tmp_path_factory.mktemp("originals")
    study, series = generate_uid(), generate_uid()
    datasets = {}
    for number in (1, 2, 3):
        dataset = ct_dataset(study_uid=study, series_uid=series, instance_number=number, seed=number)
        (folder / f"slice{number}.dcm").write_bytes(to_bytes(dataset))
    for name, file in SHARED.items():
        (folder / file).write_bytes((DICOM_DIR / file).read_bytes())
    for path in folder.iterdir():
        dataset = pydicom.dcmread(path)
        datasets[dataset.SOPInstanceUID] = dataset
    imported = orm(server, (
        "from django.conf import settings; import json;"
        "settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES['eager'];"
        "settings.APERTURE_IMPORT_CONCURRENCY = 0;"
        "from imaging.models import Datastore, ImageSet;"
        "from imaging.services.datastores import datastore_create;"
        "from imaging.services.imports import import_job_start_local;"
        "ds = datastore_create(client_token='retrieve-live', name='retrieve')['datastoreId'];"
        f"Datastore.objects.filter(pk=ds).update(ae_title={AE!r});"
        f"import_job_start_local(datastore_id=ds, paths=[{str(folder)!r}]);"
        "print(json.dumps(ImageSet.objects.filter(datastore_id=ds).count()))"))
    assert imported >= 4
    return {"study": study, "series": series, "datasets": datasets}


@pytest.fixture(scope="module")
def listener(server, originals):
    instance = DicomListener(server).start()
    yield instance
    instance.stop()


@pytest.fixture
def destination(server, tmp_path):
    scp = StoreSCP(tmp_path / "moved", ae_title="DEST")
    orm(server, f"from imaging.models import DicomNode; import json; DicomNode.objects.filter(ae_title='DEST')"
                f".delete(); print(json.dumps(DicomNode.objects.create(ae_title='DEST', host='127.0.0.1', "
                f"port={scp.port}).id))")
    yield scp
    scp.stop()


def _keys(**keys: str) -> list[str]:
    return [argument for keyword, value in keys.items() for argument in ("-k", f"{keyword}={value}")]


def movescu(listener, destination_ae: str, **keys: str) -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk("movescu"), "-v", "-S", "-aet", "MOVER", "-aec", AE, "-aem", destination_ae,
                           "-to", "30", *_keys(**keys), "127.0.0.1", str(listener.port)],
                          capture_output=True, text=True, timeout=120)


def getscu(listener, folder, model: str = "-S", **keys: str) -> subprocess.CompletedProcess:
    folder.mkdir(exist_ok=True)
    return subprocess.run([dcmtk("getscu"), "-v", model, "-aet", "GETTER", "-aec", AE, "-od", str(folder),
                           "-to", "30", *_keys(**keys), "127.0.0.1", str(listener.port)],
                          capture_output=True, text=True, timeout=120)


def _assert_bit_exact(received: dict, originals) -> None:
    for sop_uid, dataset in received.items():
        original = originals["datasets"][sop_uid]
        assert dataset.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
        assert np.array_equal(dataset.pixel_array, original.pixel_array), sop_uid
        assert dataset.pixel_array.dtype == original.pixel_array.dtype


def _read_folder(folder) -> dict:
    return {d.SOPInstanceUID: d for d in (pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file())}


def _generated(originals) -> set[str]:
    return {uid for uid, d in originals["datasets"].items() if d.SeriesInstanceUID == originals["series"]}


def _retrieve_events(server) -> list[dict]:
    return orm(server, "from imaging.models import AuditEvent; import json; print(json.dumps([e.request_parameters "
                       "for e in AuditEvent.objects.filter(event_name='DICOMRetrieve').order_by('event_time')]))")


class TestMove:
    def test_study(self, listener, destination, originals):
        result = movescu(listener, "DEST", QueryRetrieveLevel="STUDY", StudyInstanceUID=originals["study"])
        assert result.returncode == 0, result.stderr + listener.log()
        received = destination.received()
        assert set(received) == _generated(originals)
        _assert_bit_exact(received, originals)
        event = _retrieve_events(listener.server)[-1]
        assert (event["operation"], event["moveDestination"], event["matched"], event["completed"]) == (
            "C-MOVE", "DEST", 3, 3)

    def test_series_of_a_shared_file(self, listener, destination, originals):
        mr = next(d for d in originals["datasets"].values() if d.Modality == "MR" and "NumberOfFrames" not in d)
        result = movescu(listener, "DEST", QueryRetrieveLevel="SERIES", StudyInstanceUID=mr.StudyInstanceUID,
                         SeriesInstanceUID=mr.SeriesInstanceUID)
        assert result.returncode == 0, result.stderr
        received = destination.received()
        assert set(received) == {mr.SOPInstanceUID}
        _assert_bit_exact(received, originals)

    def test_unknown_destination_fails_A801(self, server, listener, destination, originals):
        result = movescu(listener, "NOWHERE", QueryRetrieveLevel="STUDY", StudyInstanceUID=originals["study"])
        assert "Refused: MoveDestinationUnknown" in result.stdout + result.stderr, result.stdout + result.stderr
        assert destination.received() == {}
        events = _retrieve_events(server)
        assert any(e.get("moveDestination") == "NOWHERE" for e in events)


class TestGet:
    def test_study(self, server, listener, originals, tmp_path):
        result = getscu(listener, tmp_path / "got", QueryRetrieveLevel="STUDY", StudyInstanceUID=originals["study"])
        assert result.returncode == 0, result.stdout + result.stderr + listener.log()
        received = _read_folder(tmp_path / "got")
        assert set(received) == _generated(originals)
        _assert_bit_exact(received, originals)
        event = _retrieve_events(server)[-1]
        assert (event["operation"], event["level"], event["matched"], event["completed"], event["failed"]) == (
            "C-GET", "STUDY", 3, 3, 0)
        assert originals["study"] not in json.dumps(event)

    def test_series_multiframe(self, listener, originals, tmp_path):
        frames = next(d for d in originals["datasets"].values() if "NumberOfFrames" in d)
        result = getscu(listener, tmp_path / "got", QueryRetrieveLevel="SERIES",
                        StudyInstanceUID=frames.StudyInstanceUID, SeriesInstanceUID=frames.SeriesInstanceUID)
        assert result.returncode == 0, result.stdout + result.stderr
        received = _read_folder(tmp_path / "got")
        assert set(received) == {frames.SOPInstanceUID}
        _assert_bit_exact(received, originals)

    def test_patient_root_patient_level(self, listener, originals, tmp_path):
        patient_id = originals["datasets"][sorted(_generated(originals))[0]].PatientID
        expected = {uid for uid, d in originals["datasets"].items() if d.get("PatientID") == patient_id}
        result = getscu(listener, tmp_path / "got", "-P", QueryRetrieveLevel="PATIENT", PatientID=patient_id)
        assert result.returncode == 0, result.stdout + result.stderr
        received = _read_folder(tmp_path / "got")
        assert set(received) == expected and _generated(originals) <= expected
        _assert_bit_exact(received, originals)

    def test_image_level(self, listener, originals, tmp_path):
        wanted = sorted(_generated(originals))[0]
        result = getscu(listener, tmp_path / "got", QueryRetrieveLevel="IMAGE", StudyInstanceUID=originals["study"],
                        SeriesInstanceUID=originals["series"], SOPInstanceUID=wanted)
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(_read_folder(tmp_path / "got")) == {wanted}


def _pynetdicom_get(listener, identifier, storage: list[tuple[str, list[str]]]):
    """C-GET with pynetdicom as the requestor, taking the SCP role for `storage` ((SOP class, syntaxes), one
    presentation context each): the final response (status, identifier) and the datasets received."""
    from pynetdicom import AE as ApplicationEntity, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    ae = ApplicationEntity(ae_title="PYGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class, syntaxes in storage:
        ae.add_requested_context(sop_class, syntaxes)
    received = []

    def on_store(event):
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        received.append(dataset)
        return 0x0000

    association = ae.associate("127.0.0.1", listener.port, ae_title=AE,
                               ext_neg=[build_role(sop_class, scp_role=True) for sop_class in {c for c, _ in storage}],
                               evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert association.is_established, listener.log()[-3000:]
    try:
        responses = list(association.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet))
    finally:
        association.release()
    return responses[-1], received


def _identifier(**keys):
    identifier = pydicom.Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


class TestGetNegotiation:
    CT = "1.2.840.10008.5.1.4.1.1.2"
    HTJ2K = "1.2.840.10008.1.2.4.202"

    def test_stored_htj2k_goes_as_stored_and_decodes_to_the_original(self, listener, originals):
        (status, _), received = _pynetdicom_get(
            listener, _identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=originals["study"],
                                  SeriesInstanceUID=originals["series"]),
            [(self.CT, [self.HTJ2K]), (self.CT, ["1.2.840.10008.1.2.1"])])
        assert status.Status == 0x0000 and status.NumberOfCompletedSuboperations == 3
        assert {d.file_meta.TransferSyntaxUID for d in received} == {self.HTJ2K}
        for dataset in received:
            assert np.array_equal(dataset.pixel_array, originals["datasets"][dataset.SOPInstanceUID].pixel_array)

    def test_implicit_only_is_transcoded(self, listener, originals):
        (status, _), received = _pynetdicom_get(
            listener, _identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=originals["study"]),
            [(self.CT, ["1.2.840.10008.1.2"])])
        assert status.Status == 0x0000 and len(received) == 3
        _assert_bit_exact({d.SOPInstanceUID: d for d in received}, originals)

    def test_instances_no_context_fits_fail_and_are_listed(self, listener, originals):
        mr = next(d for d in originals["datasets"].values() if d.Modality == "MR" and "NumberOfFrames" not in d)
        (status, identifier), received = _pynetdicom_get(
            listener, _identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=mr.StudyInstanceUID),
            [(self.CT, ["1.2.840.10008.1.2.1"])])
        assert received == []
        assert status.Status == 0xA702 and status.NumberOfFailedSuboperations == 1
        assert mr.SOPInstanceUID in identifier.FailedSOPInstanceUIDList

    def test_bad_identifier_is_refused(self, listener):
        (status, _), received = _pynetdicom_get(listener, _identifier(QueryRetrieveLevel="STUDY"),
                                                [(self.CT, ["1.2.840.10008.1.2.1"])])
        assert status.Status == 0xA900 and received == []

    def test_no_match_is_success_with_no_sub_operations(self, listener):
        (status, _), received = _pynetdicom_get(
            listener, _identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=generate_uid()),
            [(self.CT, ["1.2.840.10008.1.2.1"])])
        assert status.Status == 0x0000 and received == []


class TestMoveNegotiation:
    def test_a_destination_that_accepts_htj2k_gets_the_stored_codestream(self, server, listener, originals):
        """pynetdicom as the move destination, accepting HTJ2K: nothing is transcoded."""
        from pynetdicom import AE as ApplicationEntity, evt
        from pynetdicom.presentation import build_context

        from tests.servers import free_port

        received = []

        def on_store(event):
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            received.append(dataset)
            return 0x0000

        ae = ApplicationEntity(ae_title="HTJ2KDEST")
        port = free_port()
        scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)],
                              contexts=[build_context("1.2.840.10008.5.1.4.1.1.2",
                                                      ["1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.1"])])
        try:
            orm(server, "from imaging.models import DicomNode; import json; print(json.dumps(DicomNode.objects"
                        f".update_or_create(ae_title='HTJ2KDEST', defaults={{'host': '127.0.0.1', 'port': {port}}})"
                        "[0].id))")
            result = movescu(listener, "HTJ2KDEST", QueryRetrieveLevel="SERIES", StudyInstanceUID=originals["study"],
                             SeriesInstanceUID=originals["series"])
        finally:
            scp.shutdown()
        assert result.returncode == 0, result.stdout + result.stderr
        assert {d.file_meta.TransferSyntaxUID for d in received} == {"1.2.840.10008.1.2.4.202"}
        assert {d.SOPInstanceUID for d in received} == _generated(originals)
        for dataset in received:
            assert np.array_equal(dataset.pixel_array, originals["datasets"][dataset.SOPInstanceUID].pixel_array)

    def test_a_destination_that_is_down_fails(self, server, listener, originals):
        from tests.servers import free_port

        orm(server, "from imaging.models import DicomNode; import json; print(json.dumps(DicomNode.objects"
                    f".update_or_create(ae_title='DOWN', defaults={{'host': '127.0.0.1', 'port': {free_port()}}})"
                    "[0].id))")
        result = movescu(listener, "DOWN", QueryRetrieveLevel="STUDY", StudyInstanceUID=originals["study"])
        assert "Refused: MoveDestinationUnknown" in result.stdout + result.stderr, result.stdout + result.stderr
        assert listener.echo(called=AE).returncode == 0  # the listener serves on


def test_round_trip_stored_with_storescu_comes_back_bit_exact(server, listener, originals, tmp_path):
    """What a modality stores with C-STORE (the listener's import) comes back with C-GET, pixels equal."""
    folder = tmp_path / "modality"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    sent = {}
    for number in (1, 2):
        dataset = ct_dataset(study_uid=study, series_uid=series, instance_number=number, seed=10 + number,
                             rows=96, columns=80)
        (folder / f"{number}.dcm").write_bytes(to_bytes(dataset))
        sent[dataset.SOPInstanceUID] = pydicom.dcmread(folder / f"{number}.dcm")
    stored = listener.storescu(*sorted(folder.iterdir()), called=AE)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    count = 0
    for _ in range(60):
        count = orm(server, "from imaging.models import ImageSet; import json; print(json.dumps(sum(s.number_of_"
                            f"instances for s in ImageSet.objects.filter(study_instance_uid={study!r}, "
                            "is_primary=True))))")
        if count == 2:
            break
    assert count == 2, listener.log()
    result = getscu(listener, tmp_path / "got", QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    assert result.returncode == 0, result.stdout + result.stderr
    received = _read_folder(tmp_path / "got")
    assert set(received) == set(sent)
    for sop_uid, dataset in received.items():
        assert np.array_equal(dataset.pixel_array, sent[sop_uid].pixel_array)


class TestMoveRefusal:
    """A refused C-MOVE answers its own status, whatever the destination node's state: the association pynetdicom
    needs before a status goes to a loopback sink, never to the node."""

    @pytest.fixture
    def down(self, server):
        from tests.servers import free_port

        orm(server, "from imaging.models import DicomNode; import json; print(json.dumps(DicomNode.objects"
                    f".update_or_create(ae_title='DOWN', defaults={{'host': '127.0.0.1', 'port': {free_port()}}})"
                    "[0].id))")
        return "DOWN"

    def test_bad_identifier_to_a_destination_that_is_down_is_A900(self, listener, originals, down):
        result = movescu(listener, down, QueryRetrieveLevel="SERIES", StudyInstanceUID=originals["study"])
        output = result.stdout + result.stderr
        assert "Error: DataSetDoesNotMatchSOPClass" in output and "MoveDestinationUnknown" not in output, output  # 0xA900

    def test_study_root_patient_level_is_A900(self, listener, originals, down):
        result = movescu(listener, down, QueryRetrieveLevel="PATIENT", PatientID="x")
        output = result.stdout + result.stderr
        assert "Error: DataSetDoesNotMatchSOPClass" in output and "MoveDestinationUnknown" not in output, output  # 0xA900
        assert listener.echo(called=AE).returncode == 0
