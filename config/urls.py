"""Top-level routes, tried in order: the admin, /metrics, the viewer's pages, DICOMweb, then the HealthImaging API
(control plane and runtime; DICOMweb shares its path space). Every route before the API's is exact; the API's list
ends with a catch-all, so anything no route knows is answered in the AWS error envelope and clients never see an
HTML 404 for a mistyped operation."""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from imaging.api.urls import FRAME_ROUTE
from imaging.dicomweb.urls import FRAMES_ROUTE
from imaging.metrics import metrics_view

urlpatterns = [
    # Frame reads first: they are most of the traffic, and each route tried before a match costs time (Django's
    # resolver walked some fifty patterns, a millisecond, before GetImageFrame). Nothing earlier matches their paths.
    FRAME_ROUTE,
    FRAMES_ROUTE,
    path("admin/", admin.site.urls),
    path("metrics", metrics_view),
    path("", include("viewer.urls")),
    path("", include("imaging.dicomweb.urls")),
    path("", include("imaging.api.urls")),
]
