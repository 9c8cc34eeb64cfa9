"""What the viewer needs to know about an image set: its instances in display order and, per instance, the pixel
module values the render service uses. Built from the stored metadata document and cached per version.

It reads metadata only: it checks no access (viewer.selectors does, before handing a view out) and reads no pixels."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, cached

from imaging.dicom.document import decode_document
from imaging.errors import NotFound
from imaging.models import ImageSet, ImageSetState
from imaging.storage import blob_store


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _float(value: Any, default: float | None = None) -> float | None:
    try:
        return float(_first(value))
    except (TypeError, ValueError):
        return default


@dataclass
class InstanceView:
    series_uid: str
    sop_uid: str
    instance_number: int | None
    position: float | None
    frame_ids: list[str]
    dicom: dict[str, Any]
    vrs: dict[str, str]
    stored_transfer_syntax: str | None

    @property
    def rows(self) -> int:
        return int(self.dicom.get("Rows") or 0)

    @property
    def columns(self) -> int:
        return int(self.dicom.get("Columns") or 0)

    def window(self) -> tuple[float, float] | None:
        center, width = _float(self.dicom.get("WindowCenter")), _float(self.dicom.get("WindowWidth"))
        if center is None or width is None or width <= 0:
            return None
        return center, width

    def pixel_spacing(self) -> tuple[float, float] | None:
        spacing = self.dicom.get("PixelSpacing") or self.dicom.get("ImagerPixelSpacing")
        if isinstance(spacing, list) and len(spacing) == 2:
            try:
                return float(spacing[0]), float(spacing[1])
            except ValueError:
                return None
        return None


@dataclass
class ImageSetView:
    image_set_id: str
    datastore_id: str
    version: int
    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, dict[str, Any]]
    instances: list[InstanceView] = field(default_factory=list)

    def frames(self, series_uid: str | None = None) -> list[tuple[InstanceView, int, str]]:
        """(instance, 1-based frame number, frame id) in display order, optionally for one series."""
        return [(instance, number + 1, frame_id) for instance in self.instances
                if series_uid is None or instance.series_uid == series_uid
                for number, frame_id in enumerate(instance.frame_ids)]


def _position(dicom: dict[str, Any]) -> float | None:
    position, orientation = dicom.get("ImagePositionPatient"), dicom.get("ImageOrientationPatient")
    try:
        point = [float(v) for v in position]
        if isinstance(orientation, list) and len(orientation) == 6:
            row, col = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]]
            normal = [row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
                      row[0] * col[1] - row[1] * col[0]]
            return sum(p * n for p, n in zip(point, normal))
        return point[2]
    except (TypeError, ValueError, IndexError):
        return None


def build_view(image_set: ImageSet, document: dict[str, Any]) -> ImageSetView:
    view = ImageSetView(image_set_id=image_set.id, datastore_id=image_set.datastore_id,
                        version=image_set.content_version, patient=document["Patient"].get("DICOM", {}),
                        study=document["Study"].get("DICOM", {}),
                        series={uid: node.get("DICOM", {}) for uid, node in document["Study"]["Series"].items()})
    for series_uid, series in document["Study"]["Series"].items():
        for sop_uid, node in series.get("Instances", {}).items():
            dicom = node.get("DICOM", {})
            try:
                number = int(dicom.get("InstanceNumber")) if dicom.get("InstanceNumber") not in (None, "") else None
            except (TypeError, ValueError):
                number = None
            view.instances.append(InstanceView(
                series_uid=series_uid, sop_uid=sop_uid, instance_number=number, position=_position(dicom),
                frame_ids=[frame["ID"] for frame in node.get("ImageFrames", [])], dicom=dicom,
                vrs=node.get("DICOMVRs", {}), stored_transfer_syntax=node.get("StoredTransferSyntaxUID"),
            ))
    view.instances.sort(key=lambda i: (i.series_uid, i.instance_number is None, i.instance_number or 0,
                                       i.position if i.position is not None else 0.0, i.sop_uid))
    return view


# Per process, in cachetools rather than Django's cache framework: a view is a tree of Python objects that the
# framework would pickle on every get and set, and rebuilding it in another process costs one metadata read. The key
# holds the content version, so an update is a new entry and a stale one ages out; nothing is ever invalidated.
_VIEWS_KEPT = 64
_views: LRUCache[tuple[str, int], ImageSetView] = LRUCache(maxsize=_VIEWS_KEPT)


@cached(_views, key=lambda image_set: (image_set.id, image_set.content_version), lock=threading.Lock())
def _image_set_view(image_set: ImageSet) -> ImageSetView:
    # The lock guards the cache only: two threads missing the same key both build it, and one result is kept.
    row = image_set.versions.get(version=image_set.content_version)
    return build_view(image_set, decode_document(blob_store().get(row.metadata_key) or b""))


def image_set_view(*, datastore_id: str, image_set_id: str) -> ImageSetView:
    """The current version of a live image set, as the viewer shows it; NotFound for a deleted or empty one."""
    image_set = ImageSet.objects.filter(pk=image_set_id, datastore_id=datastore_id).exclude(
        state=ImageSetState.DELETED).first()
    if image_set is None or image_set.content_version == 0:
        raise NotFound("No such image set")
    return _image_set_view(image_set)


def image_set_view_of(*, image_set: ImageSet) -> ImageSetView:
    """The current version of an image set the caller has already found (and authorized), without finding it again;
    NotFound for one with no completed version."""
    if image_set.content_version == 0:
        raise NotFound("No such image set")
    return _image_set_view(image_set)
