"""STOW-RS views (SPEC 11.5): StoreDICOM (POST /studies) and StoreDICOMStudy (POST /studies/{study}).

Only HTTP lives here: the body arrives spooled to a temporary file and hashed for SigV4 (`spooled_body`), the
call is authorized on the data store, and imaging.services.stow stores the instances and says what became of
each. The answer is its DICOM JSON dataset: 200 when every instance was stored, 409 when any failed (SPEC 11.5,
as the service answers, where PS3.18 would say 202). The audit trail records the route's labels and the counts,
never DICOM values.
"""
from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from imaging.aws.signed import SignedCall, signed_route
from imaging.errors import NotAcceptable
from imaging.models import datastore_arn
from imaging.services.stow import instances_store


def _store_parameters(request: HttpRequest, *, datastoreId: str, study: str | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"datastoreId": datastoreId,
                                  "contentType": request.headers.get("Content-Type", "")[:256]}
    if study is not None:
        parameters["study"] = study
    return parameters


def _stored(call: SignedCall, *, datastoreId: str, study: str | None) -> HttpResponse:
    assert call.body_file is not None, "STOW routes spool their body"
    accept = call.request.headers.get("Accept")
    if accept and not any(media in accept for media in ("application/dicom+json", "application/json", "*/*")):
        raise NotAcceptable("STOW-RS answers application/dicom+json only")  # refused before anything is stored
    result = instances_store(datastore_id=datastoreId, body=call.body_file,
                             content_type=call.request.headers.get("Content-Type"), study_uid=study,
                             base_url=call.request.build_absolute_uri(f"/datastore/{datastoreId}"))
    call.audit_response = result.summary()
    return HttpResponse(json.dumps(result.dataset()), status=200 if result.all_stored else 409,
                        content_type="application/dicom+json")


@signed_route(operation_name="StoreDICOM", method="POST", parameters=_store_parameters, allow_unsigned_payload=True,
              spooled_body=True, resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def store_instances(call: SignedCall, *, datastoreId: str) -> HttpResponse:
    return _stored(call, datastoreId=datastoreId, study=None)


@signed_route(operation_name="StoreDICOMStudy", method="POST", parameters=_store_parameters,
              allow_unsigned_payload=True, spooled_body=True,
              resources=lambda call: [datastore_arn(call.parameters["datastoreId"])])
def store_study_instances(call: SignedCall, *, datastoreId: str, study: str) -> HttpResponse:
    return _stored(call, datastoreId=datastoreId, study=study)
