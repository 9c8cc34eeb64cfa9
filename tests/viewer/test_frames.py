"""The viewer's render orchestration in process (imaging.render.frames): what is cached and by which key."""
from __future__ import annotations

import pytest

from imaging.render import frames
from viewer import selectors

pytestmark = pytest.mark.django_db(transaction=True)


def test_thumbnails_and_lut_pipelines_are_kept_per_version(viewer_data, monkeypatch):
    data = viewer_data
    view = selectors.viewable_image_set(user=data.clinician, datastore_id=data.datastore.id,
                                        image_set_id=data.ct_image_set.id)
    body = frames.series_thumbnail(view=view, series_uid=data.ct_series)
    assert body[:2] == b"\xff\xd8"
    assert frames._thumbnails[(view.image_set_id, view.version, data.ct_series)] is body
    assert frames._thumbnails.currsize >= len(body) and frames._thumbnails.maxsize == frames.THUMBNAIL_CACHE_BYTES
    monkeypatch.setattr(frames, "frame_render", lambda **kwargs: pytest.fail("rendered again"))
    assert frames.series_thumbnail(view=view, series_uid=data.ct_series) is body
    series_frames = view.frames(data.ct_series)
    instance = series_frames[len(series_frames) // 2][0]
    assert frames._pipelines[(view.image_set_id, view.version, instance.sop_uid)] is not None
