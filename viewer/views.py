"""Viewer pages: study list, study page, the viewer, series thumbnails. Every page needs a logged-in user who may
read the data store; the work is done by viewer.services."""
from __future__ import annotations

import threading
from collections import OrderedDict

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from imaging.errors import AccessDenied, NotFound
from viewer import services
from viewer.access import readable_datastores

FILTERS = ("q", "patient_id", "accession", "date_from", "date_to", "modality", "datastore", "sort")
MODALITIES = ("CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT", "SC", "RTDOSE", "RTPLAN", "SR", "SEG")
_thumbnails: OrderedDict[tuple, bytes] = OrderedDict()
_thumbnails_lock = threading.Lock()


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    query = {name: request.GET.get(name, "").strip()[:128] for name in FILTERS}
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    studies, has_next = services.studies_search(user=request.user, query=query, page=page)
    return render(request, "viewer/studies.html", {
        "studies": studies, "query": query, "page": page, "has_next": has_next,
        "datastores": readable_datastores(request.user).order_by("name"), "modalities": MODALITIES,
        "sorts": [("date", "Newest first"), ("-date", "Oldest first"), ("name", "Patient name"), ("id", "Patient ID")],
    })


@login_required
@require_GET
def study(request: HttpRequest, datastore_id: str, study_uid: str) -> HttpResponse:
    try:
        study_row, series = services.study_detail(user=request.user, datastore_id=datastore_id, study_uid=study_uid)
    except NotFound as e:
        raise Http404("No such study") from e
    return render(request, "viewer/study.html", {"study": study_row, "series": series, "datastore_id": datastore_id})


@login_required
@require_GET
def viewer(request: HttpRequest, datastore_id: str, image_set_id: str) -> HttpResponse:
    try:
        view = services.viewable_image_set(user=request.user, datastore_id=datastore_id, image_set_id=image_set_id)
    except (NotFound, AccessDenied) as e:
        raise Http404("No such image set") from e
    series_uid = request.GET.get("series") or next(iter(view.series), "")
    study_rows = services.study_detail(user=request.user, datastore_id=datastore_id,
                                       study_uid=str(view.study.get("StudyInstanceUID", "")))[1] \
        if view.study.get("StudyInstanceUID") else []
    return render(request, "viewer/viewer.html", {
        "view": view, "datastore_id": datastore_id, "image_set_id": image_set_id, "series_uid": series_uid,
        "series_list": study_rows, "preset": request.GET.get("preset", ""),
    })


@login_required
@require_GET
def thumbnail(request: HttpRequest, datastore_id: str, image_set_id: str, series_uid: str) -> HttpResponse:
    try:
        view = services.viewable_image_set(user=request.user, datastore_id=datastore_id, image_set_id=image_set_id)
        key = (image_set_id, view.version, series_uid)
        with _thumbnails_lock:
            body = _thumbnails.get(key)
        if body is None:
            frames = view.frames(series_uid)
            if not frames:
                raise NotFound("No frames")
            body, _ = services.render(view=view, index=len(frames) // 2, series_uid=series_uid,
                                      max_size=(128, 128), quality=75)
            with _thumbnails_lock:
                _thumbnails[key] = body
                while len(_thumbnails) > 2048:
                    _thumbnails.popitem(last=False)
    except (NotFound, AccessDenied) as e:
        raise Http404("No thumbnail") from e
    response = HttpResponse(body, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response
