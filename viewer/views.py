"""Viewer pages: study list, study page, the viewer, series thumbnails and share links. Every page needs a
logged-in user who may read the data store, or a valid share link; the work is done by viewer.selectors (what to
show) and imaging.render.frames (thumbnails)."""
from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_POST

from imaging.dicom.window_presets import window_presets_as_data
from imaging.errors import AccessDenied, ApertureError, NotFound
from imaging.render import frames
from imaging.selectors import datastores_readable
from imaging.services.audit import audit_record, client_ip
from imaging.services.dicom_send import dicom_send_nodes, dicom_send_of, dicom_send_start
from imaging.services.sharing import ShareLinkInvalid, share_link_resolve
from viewer import selectors

# Viewport layouts by name → viewports side by side. The viewer page takes ?layout=1x2 so that tests (and users)
# can see two independent viewports of the same series; real hanging layouts come with the reading room.
LAYOUTS = {"1x1": 1, "1x2": 2}
FILTERS = ("q", "patient_id", "accession", "date_from", "date_to", "modality", "datastore", "sort")
MODALITIES = ("CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT", "SC", "RTDOSE", "RTPLAN", "SR", "SEG")


def page_view(request: HttpRequest, name: str, **subject) -> None:
    """Record a page view of patient data in the audit trail."""
    # The route name, not the path: paths carry study UIDs and share tokens.
    route = request.resolver_match.url_name if request.resolver_match else ""
    audit_record(event_name=name, event_type="ViewerEvent", user=request.user, source_ip=client_ip(request.META),
                 user_agent=request.headers.get("User-Agent", ""), parameters={"page": route}, **subject)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    query = {name: request.GET.get(name, "").strip()[:128] for name in FILTERS}
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    studies, has_next = selectors.studies_search(user=request.user, query=query, page=page)
    page_view(request, "ViewStudyList")
    return render(request, "viewer/studies.html", {
        "studies": studies, "query": query, "page": page, "has_next": has_next,
        "datastores": datastores_readable(user=request.user).order_by("name"), "modalities": MODALITIES,
        "sorts": [("date", "Newest first"), ("-date", "Oldest first"), ("name", "Patient name"), ("id", "Patient ID")],
    })


@login_required
@require_GET
def study(request: HttpRequest, datastore_id: str, study_uid: str) -> HttpResponse:
    try:
        study_row, series = selectors.study_detail(user=request.user, datastore_id=datastore_id, study_uid=study_uid)
    except NotFound as e:
        raise Http404("No such study") from e
    page_view(request, "ViewStudy", datastore_id=datastore_id, study_uid=study_uid, patient_id=study_row.patient_id)
    return render(request, "viewer/study.html", {"study": study_row, "series": series, "datastore_id": datastore_id,
                                                 **_send_context(request, datastore_id, study_uid)})


def _send_context(request: HttpRequest, datastore_id: str, study_uid: str) -> dict:
    """The "Send to" form's nodes (none: no form) and the last send asked for from this page."""
    nodes = dicom_send_nodes(user=request.user, datastore_id=datastore_id)
    if not nodes:
        return {"send_nodes": []}
    sent = dicom_send_of(user=request.user, send_id=request.GET.get("sent", ""), datastore_id=datastore_id,
                         study_uid=study_uid)
    return {"send_nodes": nodes, "send": sent, "send_error": request.GET.get("send_error", "")[:200]}


@login_required
@require_POST
def study_send(request: HttpRequest, datastore_id: str, study_uid: str) -> HttpResponse:
    """Send to: the study, or one of its series, to a DICOM node, as a background task (imaging.services.dicom_send,
    which decides who may); back to the study page with the send's id."""
    page = reverse("viewer:study", args=[datastore_id, study_uid])
    try:
        node_id = int(request.POST.get("node", ""))
    except ValueError:
        return HttpResponseRedirect(f"{page}?send_error=Choose+a+DICOM+node")
    try:
        send = dicom_send_start(datastore_id=datastore_id, node_id=node_id, study_uid=study_uid,
                                series_uid=request.POST.get("series") or None, user=request.user)
    except AccessDenied as e:
        raise Http404("No such study") from e
    except ApertureError:
        return HttpResponseRedirect(f"{page}?send_error=The+send+could+not+be+started")
    return HttpResponseRedirect(f"{page}?sent={send.pk}")


def _viewer_context(request, view, datastore_id: str, image_set_id: str, series_uid: str, *, share_token: str = "",
                    hide_browser: bool = False, preset: str = "", layout: str = "1x1") -> dict:
    series_list = []
    if not hide_browser and view.study.get("StudyInstanceUID"):
        if share_token:
            series_list = selectors.study_series(datastore_id=datastore_id,
                                                 study_uid=str(view.study["StudyInstanceUID"]))
        else:
            series_list = selectors.study_detail(user=request.user, datastore_id=datastore_id,
                                                 study_uid=str(view.study["StudyInstanceUID"]))[1]
    return {"view": view, "datastore_id": datastore_id, "image_set_id": image_set_id, "series_uid": series_uid,
            "series_list": series_list, "preset": preset, "share_token": share_token, "hide_browser": hide_browser,
            "presets": window_presets_as_data(), "layout": layout, "viewport_slots": range(LAYOUTS[layout]),
            # Websocket routes live outside the HTTP URLconf; the page hands the path to the JavaScript.
            "render_socket_path": reverse("render-socket", urlconf="viewer.routing")}


@login_required
@require_GET
def viewer(request: HttpRequest, datastore_id: str, image_set_id: str) -> HttpResponse:
    try:
        view = selectors.viewable_image_set(user=request.user, datastore_id=datastore_id, image_set_id=image_set_id)
    except (NotFound, AccessDenied) as e:
        raise Http404("No such image set") from e
    series_uid = request.GET.get("series") or next(iter(view.series), "")
    page_view(request, "ViewImageSet", datastore_id=datastore_id, image_set_id=image_set_id)
    return render(request, "viewer/viewer.html", _viewer_context(
        request, view, datastore_id, image_set_id, series_uid, preset=request.GET.get("preset", ""),
        layout=request.GET.get("layout") if request.GET.get("layout") in LAYOUTS else "1x1"))


def _embeddable(response: HttpResponse) -> HttpResponse:
    """Share pages may be framed by the allow-listed origins only (everything else keeps X-Frame-Options: DENY)."""
    origins = " ".join(settings.APERTURE_EMBED_ORIGINS)
    response["Content-Security-Policy"] = f"frame-ancestors 'self' {origins}".strip()
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL: never send it onwards
    response["Cache-Control"] = "no-store"
    return response


@xframe_options_exempt
@require_GET
def share(request: HttpRequest, token: str) -> HttpResponse:
    user = request.user if request.user.is_authenticated else None
    try:
        link = share_link_resolve(token, user=user)
    except ShareLinkInvalid as e:
        if e.needs_login and user is None:
            return redirect_to_login(request.get_full_path())
        response = render(request, "viewer/share_error.html", {"reason": e.reason}, status=403)
        return _embeddable(response)
    image_set_id = selectors.shared_image_set_id(link=link)
    if image_set_id is None:
        return _embeddable(render(request, "viewer/share_error.html",
                                  {"reason": "The shared study is no longer available."}, status=404))
    view = selectors.viewable_image_set(user=user, datastore_id=link.datastore_id, image_set_id=image_set_id,
                                        share_token=token)
    series_uid = request.GET.get("series") or link.initial_series or next(iter(view.series), "")
    hide = link.hide_browser if "browser" not in request.GET else request.GET.get("browser") == "0"
    page_view(request, "ViewSharedImageSet", datastore_id=link.datastore_id, image_set_id=image_set_id)
    context = _viewer_context(request, view, link.datastore_id, image_set_id, series_uid, share_token=token,
                              hide_browser=hide, preset=request.GET.get("preset", link.window_preset))
    return _embeddable(render(request, "viewer/viewer.html", context))


def _login_or_share(view_function):
    @wraps(view_function)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated and not request.GET.get("share"):
            return redirect_to_login(request.get_full_path())
        return view_function(request, *args, **kwargs)
    return wrapper


@_login_or_share
@require_GET
def thumbnail(request: HttpRequest, datastore_id: str, image_set_id: str, series_uid: str) -> HttpResponse:
    try:
        view = selectors.viewable_image_set(user=request.user, datastore_id=datastore_id, image_set_id=image_set_id,
                                            share_token=request.GET.get("share"))
        body = frames.series_thumbnail(view=view, series_uid=series_uid)
    except (NotFound, AccessDenied) as e:
        raise Http404("No thumbnail") from e
    response = HttpResponse(body, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response
