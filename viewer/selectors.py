"""The viewer's read-side queries: find studies, list a study's series, open an image set for a user or a share link.

Everything here reads; nothing writes, renders or caches pixels (that is imaging.render.frames). Who may read a
data store is imaging.selectors' rule (the one the API applies too; the viewer shows ACTIVE data stores only) and what
a share link covers is imaging.services.sharing's: this module only applies them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imaging.errors import AccessDenied, NotFound
from imaging.models import ImageSet, ImageSetState, ShareLink, StudyIndex
from imaging.render.imagemeta import ImageSetView, InstanceView, image_set_view
from imaging.selectors import datastore_readable, datastores_readable
from imaging.services.sharing import share_access
from imaging.study_index import name_part_prefix, name_tokens

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser | None

STUDY_SORTS = {"date": ("-study_date", "-id"), "-date": ("study_date", "id"), "name": ("patient_name", "id"),
               "-name": ("-patient_name", "-id"), "id": ("patient_id", "id")}
PAGE_SIZE = 25


def studies_search(*, user: User, query: dict[str, str], page: int = 1) -> tuple[list[StudyIndex], bool]:
    """A page of studies the user may read, and whether there is a next page."""
    queryset = StudyIndex.objects.filter(datastore__in=datastores_readable(user=user))
    if query.get("datastore"):
        queryset = queryset.filter(datastore_id=query["datastore"])
    for token in name_tokens(query.get("q", ""))[:3]:
        queryset = queryset.filter(name_part_prefix(token))
    if query.get("patient_id"):
        queryset = queryset.filter(patient_id=query["patient_id"])
    if query.get("accession"):
        queryset = queryset.filter(accession_number=query["accession"])
    if query.get("date_from"):
        queryset = queryset.filter(study_date__gte=query["date_from"].replace("-", ""))
    if query.get("date_to"):
        queryset = queryset.filter(study_date__lte=query["date_to"].replace("-", ""))
    if query.get("modality"):
        queryset = queryset.filter(modalities__contains=f" {query['modality'].upper()} ")
    queryset = queryset.order_by(*STUDY_SORTS.get(query.get("sort", "date"), STUDY_SORTS["date"]))
    offset = (max(page, 1) - 1) * PAGE_SIZE
    rows = list(queryset[offset : offset + PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


@dataclass
class SeriesSummary:
    image_set_id: str
    series_uid: str
    description: str
    modality: str
    number: str
    instances: list[InstanceView]


def study_detail(*, user: User, datastore_id: str, study_uid: str) -> tuple[StudyIndex, list[SeriesSummary]]:
    """The study's index row and its series, if the user may read its data store; NotFound otherwise."""
    if not datastore_readable(user=user, datastore_id=datastore_id):
        raise NotFound("No such study")
    study = StudyIndex.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid).first()
    if study is None:
        raise NotFound("No such study")
    return study, study_series(datastore_id=datastore_id, study_uid=study_uid)


def study_series(*, datastore_id: str, study_uid: str) -> list[SeriesSummary]:
    """The series of a study without a user check (for share links, which were checked already)."""
    series: list[SeriesSummary] = []
    for image_set in ImageSet.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid,
                                             is_primary=True).exclude(state=ImageSetState.DELETED):
        view = image_set_view(datastore_id=datastore_id, image_set_id=image_set.id)
        for series_uid, dicom in view.series.items():
            series.append(SeriesSummary(
                image_set_id=image_set.id, series_uid=series_uid,
                description=str(dicom.get("SeriesDescription") or ""), modality=str(dicom.get("Modality") or ""),
                number=str(dicom.get("SeriesNumber") or ""),
                instances=[i for i in view.instances if i.series_uid == series_uid]))
    series.sort(key=lambda s: (int(s.number) if s.number.lstrip("-").isdigit() else 10**9, s.series_uid))
    return series


def shared_image_set_id(*, link: ShareLink) -> str | None:
    """The image set a share link opens on: the one it names; for a whole study, the primary image set of its
    initial series, else the study's oldest; None when the study has none left."""
    if link.image_set_id:
        return link.image_set_id
    sets = ImageSet.objects.filter(datastore_id=link.datastore_id, study_instance_uid=link.study_instance_uid,
                                   is_primary=True).exclude(state=ImageSetState.DELETED)
    chosen = sets.filter(series_instance_uid=link.initial_series).first() or sets.order_by("created_at").first()
    return chosen.id if chosen else None


def _require_view_access(*, user: User, datastore_id: str, image_set_id: str, share_token: str | None) -> None:
    if share_token:
        share_access(share_token, user=user if getattr(user, "is_authenticated", False) else None,
                     datastore_id=datastore_id, image_set_id=image_set_id)
    elif not datastore_readable(user=user, datastore_id=datastore_id):
        raise AccessDenied("You may not read this data store")


def viewable_image_set(*, user: User, datastore_id: str, image_set_id: str,
                       share_token: str | None = None) -> ImageSetView:
    """The image set, if the user may read its data store or holds a share link that covers it."""
    _require_view_access(user=user, datastore_id=datastore_id, image_set_id=image_set_id, share_token=share_token)
    return image_set_view(datastore_id=datastore_id, image_set_id=image_set_id)


def can_still_view(*, user: User, share_token: str | None, view: ImageSetView) -> bool:
    """Whether an open viewer may go on showing `view` (a grant or a data store can go away while it is open)."""
    try:
        _require_view_access(user=user, datastore_id=view.datastore_id, image_set_id=view.image_set_id,
                             share_token=share_token)
    except AccessDenied:
        return False
    return True
