"""DICOMweb routes (SPEC 11) under /datastore/{id}/studies/…, mounted by config/urls.py before the API's routes,
which answer every path nobody else serves (DICOMweb paths not served yet included) in the AWS error envelope."""
from __future__ import annotations

from django.urls import path

from imaging.dicomweb.methods import by_method
from imaging.dicomweb.views import get_instance, search_instances, search_series, search_studies
from imaging.dicomweb.wado import (
    instance_bulkdata,
    instance_frames,
    instance_metadata,
    retrieve_series,
    retrieve_study,
    series_metadata,
    study_metadata,
)

INSTANCE = "datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>"

urlpatterns = [
    path("datastore/<str:datastoreId>/studies", by_method(GET=search_studies)),
    path("datastore/<str:datastoreId>/studies/<str:study>/series", search_series),
    path("datastore/<str:datastoreId>/series", search_series),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>/instances", search_instances),
    path("datastore/<str:datastoreId>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>", by_method(GET=retrieve_study)),
    path("datastore/<str:datastoreId>/studies/<str:study>/metadata", study_metadata),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>", retrieve_series),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/metadata", series_metadata),
    path(INSTANCE, get_instance),
    path(f"{INSTANCE}/metadata", instance_metadata),
    path(f"{INSTANCE}/frames/<str:frames>", instance_frames),
    path(f"{INSTANCE}/bulkdata/<str:bulkdata>", instance_bulkdata),
]
