"""Websocket routes of the viewer."""
from __future__ import annotations

from django.urls import path

from viewer.consumers import RenderConsumer

websocket_urlpatterns = [path("ws/render/", RenderConsumer.as_asgi())]
