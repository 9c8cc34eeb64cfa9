"""Instances leaving over DIMSE, in process: C-GET/C-MOVE identifiers resolved at each level, the syntax chosen for
what a peer accepted, and the datasets built, whose pixels must equal the originals' bit for bit."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from imaging.dicom import uids
from imaging.dimse.outgoing import (
    InstanceBuilder,
    InstanceUnavailable,
    RetrieveRefused,
    accepted_syntaxes,
    instances_resolve,
    offered_contexts,
    retrieve_request_parse,
    syntax_choose,
)
from tests.local_store import local_datastore_create

pytestmark = pytest.mark.django_db(transaction=True)

HTJ2K = uids.HTJ2K_LOSSLESS_RPCL
PATIENT_ROOT_GET = PatientRootQueryRetrieveInformationModelGet


def _original_pixels(dataset):
    return dataset.pixel_array


class TestResolve:
    def test_study_level_in_instance_number_order(self, archive):
        refs = archive.resolve(QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study)
        assert [ref.sop_uid for ref in refs] == [archive.generated[n].SOPInstanceUID for n in (1, 2, 3)]
        assert {ref.stored_syntax for ref in refs} == {HTJ2K}
        assert {ref.sop_class_uid for ref in refs} == {"1.2.840.10008.5.1.4.1.1.2"}

    def test_study_uid_list(self, archive):
        ct = archive.sources["ct"]
        refs = archive.resolve(QueryRetrieveLevel="STUDY", StudyInstanceUID=[archive.study, ct.StudyInstanceUID])
        assert ct.SOPInstanceUID in {ref.sop_uid for ref in refs} and len(refs) >= 4

    def test_series_level(self, archive):
        refs = archive.resolve(QueryRetrieveLevel="SERIES", SeriesInstanceUID=archive.series)
        assert len(refs) == 3
        mr = archive.sources["mr"]
        refs = archive.resolve(QueryRetrieveLevel="SERIES", StudyInstanceUID=mr.StudyInstanceUID,
                               SeriesInstanceUID=mr.SeriesInstanceUID)
        assert [ref.sop_uid for ref in refs] == [mr.SOPInstanceUID]

    def test_image_level(self, archive):
        wanted = [archive.generated[2].SOPInstanceUID, archive.generated[3].SOPInstanceUID]
        refs = archive.resolve(QueryRetrieveLevel="IMAGE", StudyInstanceUID=archive.study,
                               SeriesInstanceUID=archive.series, SOPInstanceUID=wanted)
        assert [ref.sop_uid for ref in refs] == wanted

    def test_patient_level(self, archive):
        ct = archive.sources["ct"]
        refs = archive.resolve(QueryRetrieveLevel="PATIENT", PatientID=ct.PatientID)
        assert ct.SOPInstanceUID in {ref.sop_uid for ref in refs}
        assert archive.generated[1].SOPInstanceUID not in {ref.sop_uid for ref in refs} or \
            archive.generated[1].PatientID == ct.PatientID

    def test_no_match_is_empty(self, archive):
        assert archive.resolve(QueryRetrieveLevel="STUDY", StudyInstanceUID=generate_uid()) == []

    def test_other_datastore_sees_nothing(self, archive):
        other = local_datastore_create(name="other")
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", archive.study
        assert instances_resolve(datastore_id=other.id, request=retrieve_request_parse(identifier, model=PATIENT_ROOT_GET)) == []

    @pytest.mark.parametrize("keys", [
        {"QueryRetrieveLevel": "STUDY"},
        {"QueryRetrieveLevel": "FRAME", "StudyInstanceUID": "1.2"},
        {"StudyInstanceUID": "1.2"},
        {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2"},
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2*"},
        {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": "1.2"},
    ], ids=["no-study-uid", "bad-level", "no-level", "series-without-series-uid", "wildcard", "image-alone"])
    def test_bad_identifier_is_refused_0xA900(self, keys):
        identifier = Dataset()
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
        with pytest.raises(RetrieveRefused) as refused:
            retrieve_request_parse(identifier, model=PATIENT_ROOT_GET)
        assert refused.value.status == 0xA900

    @pytest.mark.parametrize("model", [StudyRootQueryRetrieveInformationModelGet,
                                       StudyRootQueryRetrieveInformationModelMove], ids=["get", "move"])
    def test_study_root_has_no_patient_level(self, archive, model):
        keys = {"QueryRetrieveLevel": "PATIENT", "PatientID": archive.generated[1].PatientID}
        assert archive.resolve(model=PATIENT_ROOT_GET, **keys)
        assert archive.resolve(model=PatientRootQueryRetrieveInformationModelMove, **keys)
        with pytest.raises(RetrieveRefused) as refused:
            archive.resolve(model=model, **keys)
        assert refused.value.status == 0xA900
        assert archive.resolve(model=model, QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study)

    def test_not_a_retrieve_model_is_refused(self, archive):
        with pytest.raises(RetrieveRefused) as refused:
            archive.resolve(model="1.2.840.10008.5.1.4.1.2.2.1", QueryRetrieveLevel="STUDY",
                            StudyInstanceUID=archive.study)
        assert refused.value.status == 0xA900


class TestSyntax:
    def test_offered_contexts_name_stored_then_uncompressed(self, archive):
        refs = archive.resolve(QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.study)
        [context] = offered_contexts(refs)
        assert context.transfer_syntax == [HTJ2K, uids.EXPLICIT_LE, uids.IMPLICIT_LE]

    def test_choice(self, archive):
        [ref] = archive.resolve(QueryRetrieveLevel="IMAGE", StudyInstanceUID=archive.study,
                                SOPInstanceUID=archive.generated[1].SOPInstanceUID)
        assert syntax_choose(ref, {HTJ2K, uids.EXPLICIT_LE}) == HTJ2K
        assert syntax_choose(ref, {uids.EXPLICIT_LE}) == uids.EXPLICIT_LE
        assert syntax_choose(ref, {uids.IMPLICIT_LE}) == uids.EXPLICIT_LE
        assert syntax_choose(ref, {uids.JPEG_BASELINE}) is None
        assert syntax_choose(ref, set()) is None

    def test_accepted_by_role(self):
        from pynetdicom.presentation import build_context
        context = build_context("1.2.840.10008.5.1.4.1.1.2", [uids.EXPLICIT_LE])
        context._as_scu, context._as_scp = False, True
        assert accepted_syntaxes([context], as_scu=True) == {}
        assert accepted_syntaxes([context], as_scu=False) == {"1.2.840.10008.5.1.4.1.1.2": {uids.EXPLICIT_LE}}


class TestDatasets:
    @pytest.mark.parametrize("name", ["ct", "mr", "multiframe", "rgb"])
    @pytest.mark.parametrize("syntax", ["explicit", "htj2k"])
    def test_pixels_equal_the_original(self, archive, name, syntax):
        source = archive.sources[name]
        [ref] = archive.resolve(QueryRetrieveLevel="IMAGE", StudyInstanceUID=source.StudyInstanceUID,
                                SeriesInstanceUID=source.SeriesInstanceUID, SOPInstanceUID=source.SOPInstanceUID)
        accepted = {uids.EXPLICIT_LE} if syntax == "explicit" else {HTJ2K, uids.EXPLICIT_LE}
        chosen = syntax_choose(ref, accepted)
        dataset = InstanceBuilder().dataset(ref, chosen)
        assert dataset.file_meta.TransferSyntaxUID == (uids.EXPLICIT_LE if syntax == "explicit" else HTJ2K)
        assert dataset.SOPInstanceUID == source.SOPInstanceUID
        assert dataset.SOPClassUID == source.SOPClassUID
        assert np.array_equal(dataset.pixel_array, _original_pixels(source))
        assert dataset.pixel_array.dtype == source.pixel_array.dtype

    def test_generated_series_explicit(self, archive):
        builder = InstanceBuilder()
        for ref in archive.resolve(QueryRetrieveLevel="SERIES", SeriesInstanceUID=archive.series):
            dataset = builder.dataset(ref, syntax_choose(ref, {uids.EXPLICIT_LE}))
            source = next(d for d in archive.generated.values() if d.SOPInstanceUID == ref.sop_uid)
            assert np.array_equal(dataset.pixel_array, source.pixel_array)

    def test_no_pixel_data_goes_uncompressed(self, archive):
        source = archive.sources["rtplan"]
        [ref] = archive.resolve(QueryRetrieveLevel="STUDY", StudyInstanceUID=source.StudyInstanceUID)
        assert ref.stored_syntax is None
        assert syntax_choose(ref, {HTJ2K}) is None
        dataset = InstanceBuilder().dataset(ref, syntax_choose(ref, {uids.IMPLICIT_LE}))
        assert dataset.SOPInstanceUID == source.SOPInstanceUID and "PixelData" not in dataset

    def test_lossy_original_goes_as_stored_or_not_at_all(self, archive):
        source = archive.sources["jpeg"]
        [ref] = archive.resolve(QueryRetrieveLevel="IMAGE", StudyInstanceUID=source.StudyInstanceUID,
                                SOPInstanceUID=source.SOPInstanceUID)
        assert ref.stored_syntax == uids.JPEG_BASELINE
        assert syntax_choose(ref, {uids.EXPLICIT_LE, uids.IMPLICIT_LE}) is None
        assert syntax_choose(ref, {uids.JPEG_BASELINE, uids.EXPLICIT_LE}) == uids.JPEG_BASELINE
        dataset = InstanceBuilder().dataset(ref, uids.JPEG_BASELINE)
        assert dataset.file_meta.TransferSyntaxUID == uids.JPEG_BASELINE
        assert dataset.PixelData == source.PixelData


def test_an_image_set_deleted_after_resolving_is_unavailable(archive):
    from imaging.models import ImageSet, ImageSetState

    [ref] = archive.resolve(QueryRetrieveLevel="IMAGE", StudyInstanceUID=archive.study,
                            SOPInstanceUID=archive.generated[1].SOPInstanceUID)
    ImageSet.objects.filter(pk=ref.image_set_id).update(state=ImageSetState.DELETED)
    with pytest.raises(InstanceUnavailable, match="^BlobStoreError$"):
        InstanceBuilder().dataset(ref, uids.EXPLICIT_LE)


def test_an_instance_gone_from_the_document_is_unavailable_and_its_uid_not_said(archive):
    refs = archive.resolve(QueryRetrieveLevel="SERIES", SeriesInstanceUID=archive.series)
    gone = dataclasses.replace(refs[0], sop_uid=generate_uid())
    with pytest.raises(InstanceUnavailable) as unavailable:
        InstanceBuilder().dataset(gone, uids.EXPLICIT_LE)
    assert str(unavailable.value) == "KeyError" and gone.sop_uid not in str(unavailable.value)


class TestResolveReadsOnlyMatchingImageSets:
    """A SERIES or IMAGE retrieve without StudyInstanceUID filters image sets in the query, not in Python."""

    def _others(self, archive, count: int) -> None:
        from imaging.models import ImageSet

        template = ImageSet.objects.filter(datastore=archive.datastore, series_instance_uid=archive.series).first()
        ImageSet.objects.bulk_create([
            ImageSet(id=f"{index:032x}", datastore=archive.datastore, study_instance_uid=generate_uid(),
                     series_instance_uid=generate_uid(), is_primary=True, state=template.state,
                     content_version=template.content_version)
            for index in range(count)])

    @pytest.mark.parametrize("level", ["SERIES", "IMAGE"])
    def test_only_the_series_rows_are_loaded(self, archive, level):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self._others(archive, 300)
        keys = {"QueryRetrieveLevel": level, "SeriesInstanceUID": archive.series}
        if level == "IMAGE":
            keys["SOPInstanceUID"] = archive.generated[2].SOPInstanceUID
        with CaptureQueriesContext(connection) as queries:
            refs = archive.resolve(**keys)
        assert len(refs) == (3 if level == "SERIES" else 1)
        [image_sets_query] = [q["sql"] for q in queries.captured_queries
                              if 'FROM "imaging_imageset"' in q["sql"] and "series_instance_uid" in q["sql"]
                              and "ORDER BY" in q["sql"]]
        where = image_sets_query.split("WHERE", 1)[1]
        assert "series_instance_uid" in where and archive.series in where
        select = image_sets_query.split("FROM", 1)[0]
        assert "dicom_tags" not in select and "qido_attributes" not in select  # no JSON columns
        # One image set's rows, not 300: the version and frame reads are per matching image set.
        assert len(queries.captured_queries) < 20
