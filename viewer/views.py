"""Viewer pages. Every page needs a logged-in user."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from imaging.models import Datastore, DatastoreStatus


@login_required
def home(request: HttpRequest) -> HttpResponse:
    datastores = Datastore.objects.filter(status=DatastoreStatus.ACTIVE).order_by("name")
    return render(request, "viewer/home.html", {"datastores": datastores})
