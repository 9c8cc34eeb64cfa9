"""The viewer's front end as the server hands it out: window presets defined once (imaging/dicom/window_presets.py)
and used by share-link validation, the toolbar and the JavaScript (json_script); the page's links and websocket
path from the URL configuration; the ES modules served with a JavaScript media type, each import resolving."""
from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings

from imaging.dicom.window_presets import WINDOW_PRESETS, window_preset_get, window_presets_as_data
from imaging.errors import ValidationFailed
from imaging.services.sharing import share_link_create

STATIC_VIEWER = Path(django_settings.BASE_DIR) / "static" / "viewer"
MODULES = sorted(p.relative_to(STATIC_VIEWER).as_posix() for p in STATIC_VIEWER.rglob("*.js"))


def test_presets_are_looked_up_by_exact_key():
    assert [p.key for p in WINDOW_PRESETS] == ["1", "2", "3", "4", "5", "6"]
    assert window_preset_get(key="2").center == -600 and window_preset_get(key="2").width == 1500
    for key in ("12", "", " 1", "7", "lung"):
        assert window_preset_get(key=key) is None, key


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("preset", ["12", "0", "7", "lung"])
def test_a_share_link_refuses_a_preset_the_table_lacks(viewer_data, preset):
    with pytest.raises(ValidationFailed, match="window_preset is 1 to 6"):
        share_link_create(created_by=None, datastore_id=viewer_data.datastore.id, study_uid=viewer_data.study_uid,
                          expires_in=timedelta(hours=1), window_preset=preset)


@pytest.mark.django_db(transaction=True)
def test_the_viewer_page_hands_the_table_and_its_paths_to_the_script(client, viewer_data):
    client.force_login(viewer_data.clinician)
    page = client.get(f"/view/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/?preset=3").content.decode()
    embedded = re.search(r'<script id="window-presets" type="application/json">(.*?)</script>', page, re.S)
    assert embedded and json.loads(embedded.group(1)) == window_presets_as_data()
    for preset in WINDOW_PRESETS:  # the toolbar's buttons come from the same table
        assert f'data-preset="{preset.key}" title="{preset.name} ({preset.key})">{preset.label}</button>' in page
    assert 'data-socket-path="/ws/render/"' in page and 'data-initial-preset="3"' in page
    assert '<script type="module" src="/static/viewer/main.js"></script>' in page
    assert 'href="/"' in page and 'action="/accounts/logout/"' in page


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG=False", "DEBUG=True"])
@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_served_as_javascript_and_its_imports_resolve(module, debug):
    with override_settings(DEBUG=debug):
        client = Client()  # a fresh handler: WhiteNoise reads DEBUG when it starts
        response = client.get(f"/static/viewer/{module}")
        assert response.status_code == 200
        # Browsers refuse module scripts served with a media type that is not JavaScript.
        assert response["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
        source = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    for imported in re.findall(r'^import .* from "(\./[^"]+|\.\./[^"]+)";$', source, re.M):
        target = (STATIC_VIEWER / module).parent / imported
        assert target.resolve().is_file(), f"{module} imports {imported}, which does not exist"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("layout", "viewports"), [("", 1), ("1x2", 2), ("3x3", 1), ("1x2%20", 1)])
def test_the_layout_option_repeats_the_viewport_stage(client, viewer_data, layout, viewports):
    client.force_login(viewer_data.clinician)
    page = client.get(f"/view/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/?layout={layout}").content.decode()
    assert page.count('class="viewport-stage"') == viewports
    assert page.count('id="viewport"') == 1 and page.count('id="overlay-window"') == 1 and page.count('id="status"') == 1
    assert page.count('data-overlay="window"') == viewports
