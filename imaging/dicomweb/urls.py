"""DICOMweb routes (SPEC 11) under /datastore/{id}/studies/…, mounted by config/urls.py before the API's routes,
which answer every path nobody else serves (DICOMweb paths not served yet included) in the AWS error envelope."""
from __future__ import annotations

from django.urls import path

from imaging.dicomweb.methods import by_method
from imaging.dicomweb.rendered import get_rendered, get_thumbnail
from imaging.dicomweb.stow import store_instances, store_study_instances
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

# The hottest DICOMweb route (a viewer asks it for every frame): config/urls.py also tries it first of all.
FRAMES_ROUTE = path(f"{INSTANCE}/frames/<str:frames>", instance_frames)

urlpatterns = [
    path("datastore/<str:datastoreId>/studies", by_method(GET=search_studies, POST=store_instances)),
    path("datastore/<str:datastoreId>/studies/<str:study>/series", search_series),
    path("datastore/<str:datastoreId>/series", search_series),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>/instances", search_instances),
    path("datastore/<str:datastoreId>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>",
         by_method(GET=retrieve_study, POST=store_study_instances)),
    path("datastore/<str:datastoreId>/studies/<str:study>/metadata", study_metadata),
    path("datastore/<str:datastoreId>/studies/<str:study>/rendered", get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/thumbnail", get_thumbnail),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>", retrieve_series),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/metadata", series_metadata),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/rendered", get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/thumbnail", get_thumbnail),
    path(INSTANCE, get_instance),
    path(f"{INSTANCE}/metadata", instance_metadata),
    path(f"{INSTANCE}/rendered", get_rendered),
    path(f"{INSTANCE}/thumbnail", get_thumbnail),
    FRAMES_ROUTE,
    path(f"{INSTANCE}/frames/<str:frames>/rendered", get_rendered),
    path(f"{INSTANCE}/frames/<str:frames>/thumbnail", get_thumbnail),
    path(f"{INSTANCE}/bulkdata/<str:bulkdata>", instance_bulkdata),
]
