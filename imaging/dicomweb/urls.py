"""DICOMweb routes (SPEC 11) under /datastore/{id}/studies/…, mounted by config/urls.py before the API's routes,
which answer every path nobody else serves (DICOMweb paths not served yet included) in the AWS error envelope."""
from __future__ import annotations

from django.urls import path

from imaging.dicomweb.methods import by_method
from imaging.dicomweb.rendered import get_rendered, get_thumbnail
from imaging.dicomweb.stow import store_instances, store_study_instances
from imaging.dicomweb.views import get_instance, search_instances, search_series, search_studies

urlpatterns = [
    path("datastore/<str:datastoreId>/studies", by_method(GET=search_studies, POST=store_instances)),
    path("datastore/<str:datastoreId>/studies/<str:study>", by_method(POST=store_study_instances)),
    path("datastore/<str:datastoreId>/studies/<str:study>/series", search_series),
    path("datastore/<str:datastoreId>/series", search_series),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>/instances", search_instances),
    path("datastore/<str:datastoreId>/instances", search_instances),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>", get_instance),
    path("datastore/<str:datastoreId>/studies/<str:study>/rendered", get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/rendered", get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>/rendered",
         get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>/frames/"
         "<str:frames>/rendered", get_rendered),
    path("datastore/<str:datastoreId>/studies/<str:study>/thumbnail", get_thumbnail),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/thumbnail", get_thumbnail),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>/thumbnail",
         get_thumbnail),
    path("datastore/<str:datastoreId>/studies/<str:study>/series/<str:series>/instances/<str:sop>/frames/"
         "<str:frames>/thumbnail", get_thumbnail),
]
