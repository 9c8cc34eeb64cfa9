"""Websocket routes of the viewer. Each route is named, and the list is also this module's `urlpatterns`, so pages
can give the JavaScript a websocket path with `reverse("render-socket", urlconf="viewer.routing")` instead of
writing it out."""
from __future__ import annotations

from django.urls import path

from viewer.consumers import RenderConsumer

websocket_urlpatterns = [path("ws/render/", RenderConsumer.as_asgi(), name="render-socket")]
urlpatterns = websocket_urlpatterns
