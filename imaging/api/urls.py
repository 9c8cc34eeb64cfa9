"""Routes of the HealthImaging API on one host (SPEC 2.3). Labels are named as in the botocore model.

The segment after /datastore/{id} (searchImageSets, imageSet, studies, series, instances) decides the family,
so control plane, runtime and DICOMweb share one path space without collisions. DICOMweb's own routes are in
imaging/dicomweb/urls.py, mounted before these: this module's last route answers every path nobody serves.
"""
from __future__ import annotations

from django.urls import path, re_path

from imaging.api.views import not_found, route

# The hottest route: config/urls.py also tries it first of all.
FRAME_ROUTE = path("datastore/<str:datastoreId>/imageSet/<str:imageSetId>/getImageFrame",
                   route({"POST": "GetImageFrame"}))

urlpatterns = [
    path("datastore", route({"POST": "CreateDatastore", "GET": "ListDatastores"})),
    path("datastore/<str:datastoreId>", route({"GET": "GetDatastore", "DELETE": "DeleteDatastore"})),
    path("startDICOMImportJob/datastore/<str:datastoreId>", route({"POST": "StartDICOMImportJob"})),
    path("getDICOMImportJob/datastore/<str:datastoreId>/job/<str:jobId>", route({"GET": "GetDICOMImportJob"})),
    path("listDICOMImportJobs/datastore/<str:datastoreId>", route({"GET": "ListDICOMImportJobs"})),
    path("datastore/<str:datastoreId>/searchImageSets", route({"POST": "SearchImageSets"})),
    path(
        "datastore/<str:datastoreId>/imageSet/<str:sourceImageSetId>/copyImageSet",
        route({"POST": "CopyImageSet"}),
    ),
    path("datastore/<str:datastoreId>/imageSet/<str:imageSetId>/getImageSet", route({"POST": "GetImageSet"})),
    path(
        "datastore/<str:datastoreId>/imageSet/<str:imageSetId>/getImageSetMetadata",
        route({"POST": "GetImageSetMetadata"}),
    ),
    FRAME_ROUTE,
    path(
        "datastore/<str:datastoreId>/imageSet/<str:imageSetId>/listImageSetVersions",
        route({"POST": "ListImageSetVersions"}),
    ),
    path(
        "datastore/<str:datastoreId>/imageSet/<str:imageSetId>/updateImageSetMetadata",
        route({"POST": "UpdateImageSetMetadata"}),
    ),
    path("datastore/<str:datastoreId>/imageSet/<str:imageSetId>/deleteImageSet", route({"POST": "DeleteImageSet"})),
    path("tags/<path:resourceArn>", route({"GET": "ListTagsForResource", "POST": "TagResource", "DELETE": "UntagResource"})),
    # Anything else, including DICOMweb paths not served yet, is an unknown operation in the AWS envelope.
    re_path(r"^.*$", not_found),
]
