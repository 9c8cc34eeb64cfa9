"""Top-level routes: the HealthImaging API (control plane, runtime, DICOMweb share one path space), the admin
and the viewer. The API routes come first and are exact; everything the API does not know is answered in the
AWS error envelope so that clients never see an HTML 404 for a mistyped operation."""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from imaging.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view),
    path("", include("viewer.urls")),
    path("", include("imaging.dicomweb.urls")),
    path("", include("imaging.api.urls")),
]
