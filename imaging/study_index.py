"""The study index: one row per (data store, study) built from the study's primary image sets, refreshed in the
same transaction as every import, update, copy and delete that touches the study.

A building block on the models (like them, below the services and the import pipeline, which both refresh it);
it must not import either."""
from __future__ import annotations

import re
from typing import Iterable

from django.db.models import Exists, OuterRef, Q

from imaging.models import ImageSet, ImageSetState, StudyIndex, StudyNameToken

_NAME_PARTS = re.compile(r"[\^= ,]+")


# Above this many studies a name prefix is checked row by row instead of resolved to its study ids first.
RARE_NAME_MATCHES = 2000


def name_tokens(patient_name: str) -> list[str]:
    return sorted({part.upper()[:64] for part in _NAME_PARTS.split(patient_name or "") if part})


def name_part_prefix(token: str) -> Q:
    """Studies with a name part starting with `token` (one of name_tokens' uppercase parts), as an index range
    (token >= 'DO' and < 'DP'), for the viewer's study list and QIDO-RS alike.

    A rare prefix is resolved to its few study ids first (then only those rows are sorted); a common one is checked
    row by row while the study index is read in sort order, which stops as soon as the page is full.
    """
    upper = token[:-1] + chr(ord(token[-1]) + 1)
    matching = StudyNameToken.objects.filter(token__gte=token, token__lt=upper)
    ids = list(matching.values_list("study_id", flat=True)[: RARE_NAME_MATCHES + 1])
    if len(ids) <= RARE_NAME_MATCHES:
        return Q(id__in=ids)
    return Q(Exists(matching.filter(study=OuterRef("pk"))))


def study_index_refresh(*, datastore_id: str, study_uids: Iterable[str]) -> None:
    for study_uid in set(study_uids):
        sets = list(ImageSet.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid, is_primary=True)
                    .exclude(state=ImageSetState.DELETED).order_by("created_at", "id"))
        if not sets:
            StudyIndex.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid).delete()
            continue
        tags = sets[0].dicom_tags
        qido = sets[0].qido_attributes or {}
        modalities = sorted({s.modality for s in sets if s.modality})
        row, _ = StudyIndex.objects.update_or_create(
            datastore_id=datastore_id, study_instance_uid=study_uid,
            defaults={
                "patient_name": tags.get("DICOMPatientName", "")[:256],
                "patient_id": tags.get("DICOMPatientId", "")[:64],
                "patient_birth_date": tags.get("DICOMPatientBirthDate", "")[:18],
                "patient_sex": tags.get("DICOMPatientSex", "")[:16],
                "study_date": tags.get("DICOMStudyDate", "")[:18],
                "study_time": tags.get("DICOMStudyTime", "")[:28],
                "study_description": tags.get("DICOMStudyDescription", "")[:64],
                "accession_number": tags.get("DICOMAccessionNumber", "")[:16],
                "referring_physician_name": qido.get("ReferringPhysicianName", "")[:256],
                "timezone_offset": qido.get("TimezoneOffsetFromUTC", "")[:16],
                "study_id": tags.get("DICOMStudyId", "")[:16],
                "modalities": (" " + " ".join(modalities) + " ")[:128],
                "number_of_series": len(sets),
                "number_of_instances": sum(s.number_of_instances for s in sets),
            },
        )
        StudyNameToken.objects.filter(study=row).delete()
        StudyNameToken.objects.bulk_create([StudyNameToken(study=row, token=t) for t in name_tokens(row.patient_name)])
