"""One DICOMweb path, several operations by method: `/studies` is SearchDICOMStudies on GET and StoreDICOM on POST,
`/studies/{study}` a study retrieve on GET and StoreDICOMStudy on POST. Each view keeps its own signed_route."""
from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from imaging.aws.signed import unknown_operation

View = Callable[..., HttpResponse]


def by_method(**views: View) -> View:
    """A view that hands the request to the view named by its method (`GET=…, POST=…`); any other method is an
    unknown operation (404 in the AWS envelope), as for every path nobody serves."""

    @csrf_exempt
    def dispatch(request: HttpRequest, **labels: str) -> HttpResponse:
        view = views.get(request.method or "")
        if view is None:
            return unknown_operation(request)
        return view(request, **labels)

    return dispatch
