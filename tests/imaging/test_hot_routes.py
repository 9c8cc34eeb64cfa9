"""The frame routes are matched before any other pattern is tried (config/urls.py): the resolver walked some fifty
patterns, a millisecond per request, before it reached GetImageFrame. Their views are the same as before."""
from __future__ import annotations

import pytest
from django.urls import resolve

from imaging.api.urls import FRAME_ROUTE
from imaging.dicomweb.urls import FRAMES_ROUTE

DATASTORE = "a" * 32


@pytest.mark.parametrize("path, route", [
    (f"/datastore/{DATASTORE}/imageSet/{'b' * 32}/getImageFrame", FRAME_ROUTE),
    (f"/datastore/{DATASTORE}/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1,2", FRAMES_ROUTE),
])
def test_frame_paths_are_the_first_pattern_tried(path, route):
    match = resolve(path)
    assert match.func is route.callback
    assert len(match.tried) <= 2  # the two frame patterns at most, not the fifty before them


@pytest.mark.parametrize("path, view_name", [
    (f"/datastore/{DATASTORE}/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1/rendered", "get_rendered"),
    (f"/datastore/{DATASTORE}/imageSet/{'b' * 32}/getImageSet", None),
    ("/studies/x/y/", "study"),
])
def test_other_paths_still_reach_their_views(path, view_name):
    match = resolve(path)
    if view_name:
        assert view_name in (match.url_name or "", getattr(match.func, "__name__", ""))
    assert match.func not in (FRAME_ROUTE.callback, FRAMES_ROUTE.callback)
