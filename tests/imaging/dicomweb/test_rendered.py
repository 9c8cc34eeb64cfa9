"""Rendered resources and thumbnails (GetDICOMRendered, GetDICOMThumbnail) through the Django test client, signed
with SigV4, on files imported in process: the pixels are the viewer's render of the same frame, checked against
NumPy references of the DICOM formulas where the viewer's own tests do not already say so."""
from __future__ import annotations

import io
import json
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import urlencode

import numpy as np
from asgiref.sync import async_to_sync
import pydicom
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from PIL import Image
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid

from imaging.models import AuditEvent, ImageSet, ManagedPolicy
from imaging.render import frames
from imaging.render.imagemeta import image_set_view
from imaging.render.pixels import Window, to_uint8, voi_window
from imaging.services.accesskeys import accesskey_create
from imaging.services.imports import import_job_start_local
from tests import personas
from tests.dicomgen import ct_dataset, to_bytes
from tests.local_store import local_datastore_create
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.django_db(transaction=True)

CT_SMALL = "ELE__CT_small.dcm"  # 128x128 signed, a window in the file
CR_MONOCHROME1 = "hierarchy/77654033_CR1_6154.dcm"
RGB = "ELE__SC_rgb.dcm"
MULTIFRAME = "ELE__emri_small.dcm"  # 10 frames of 64x64


class Archive:
    def __init__(self, datastore, key, ct, files):
        self.datastore, self.key, self.ct, self.files = datastore, key, ct, files

    def base(self, study: str) -> str:
        return f"/datastore/{self.datastore.id}/studies/{study}"

    def ct_instance(self, number: int) -> str:
        study, series, sops = self.ct
        return f"{self.base(study)}/series/{series}/instances/{sops[number - 1]}"

    def file_path(self, name: str) -> str:
        source = self.files[name]
        return f"{self.base(source.StudyInstanceUID)}/series/{source.SeriesInstanceUID}/instances/{source.SOPInstanceUID}"

    def image_set(self, series_uid: str) -> ImageSet:
        return ImageSet.objects.get(datastore=self.datastore, series_instance_uid=series_uid, is_primary=True)


def _ct_pixels(seed: int) -> np.ndarray:
    """A smooth 512x512 picture (so reduced levels look like the full one) with a little noise."""
    y, x = np.mgrid[0:512, 0:512].astype(np.float64)
    noise = np.random.default_rng(seed).integers(-20, 21, (512, 512))
    return np.clip(1024 + 600 * np.sin(x / 40 + seed) * np.cos(y / 55) + noise, 0, 4095).astype(np.uint16)


@pytest.fixture
def archive(store_settings, tmp_path) -> Archive:
    """One CT study: a series of three 512x512 slices (instance numbers 3, 1, 2 on disk) and a 64x64 scout series
    numbered before it; and four files of ../shared/dicom, each its own study."""
    datastore = local_datastore_create()
    folder = tmp_path / "in"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    for number in (3, 1, 2):
        ds = ct_dataset(study_uid=study, series_uid=series, sop_uid=sops[number - 1], instance_number=number,
                        rows=512, columns=512, pixels=_ct_pixels(number))
        (folder / f"ct{number}.dcm").write_bytes(to_bytes(ds))
    scout = ct_dataset(study_uid=study, series_uid=generate_uid(), rows=64, columns=64, seed=5)
    scout.SeriesNumber = "1"  # before the CT series (3): the study's first series
    (folder / "scout.dcm").write_bytes(to_bytes(scout))
    files = {"scout": scout}
    for index, name in enumerate((CT_SMALL, CR_MONOCHROME1, RGB, MULTIFRAME)):
        (folder / f"file{index}.dcm").write_bytes((DICOM_DIR / name).read_bytes())
        files[name] = pydicom.dcmread(DICOM_DIR / name, stop_before_pixels=True)
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    key = accesskey_create(user=personas.clinician(datastore, username="render-clinician"))
    return Archive(datastore, key, (study, series, sops), files)


def get(client, archive, path, query=None, *, accept="image/png", key=None):
    """A signed GET. The path goes to the server as sent (REQUEST_URI, as a real server hands it over), so that
    the commas of a frame list are verified as the client signed them."""
    key = key or archive.key
    url_path = path + ("?" + urlencode(query, doseq=True) if query else "")
    request = AWSRequest(method="GET", url=f"http://testserver{url_path}")
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    headers = {"HTTP_AUTHORIZATION": request.headers["Authorization"], "HTTP_X_AMZ_DATE": request.headers["X-Amz-Date"]}
    if accept:
        headers["HTTP_ACCEPT"] = accept
    return client.get(url_path, HTTP_HOST="testserver", REQUEST_URI=url_path, **headers)


def image(response) -> np.ndarray:
    assert response.status_code == 200, response.content
    return np.asarray(Image.open(io.BytesIO(response.content)))


def error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = json.loads(response.content)
    assert response["x-amzn-ErrorType"] == body["__type"]
    return body["message"]


def viewer_png(archive, series_uid: str, index: int, **kwargs) -> np.ndarray:
    image_set = archive.image_set(series_uid)
    view = image_set_view(datastore_id=archive.datastore.id, image_set_id=image_set.id)
    body, _ = frames.frame_render(view=view, index=index, series_uid=series_uid, fmt="png", **kwargs)
    return np.asarray(Image.open(io.BytesIO(body)))


async def _joined(pieces) -> bytes:
    return b"".join([piece async for piece in pieces])


def parts(response) -> list[tuple[str, bytes]]:
    """The parts of a multipart/related body, as the email parser reads them."""
    assert response.status_code == 200, response.content
    content = async_to_sync(_joined)(response.streaming_content) if response.streaming else response.content
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {response['Content-Type']}\r\n\r\n".encode() + content)
    assert message.get_content_type() == "multipart/related"
    return [(part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_parts()]


def test_instance_rendered_is_the_viewers_render_of_the_frame(client, archive):
    study, series, _ = archive.ct
    # display order is instance number: instance 1 is the viewer's frame 0
    assert np.array_equal(image(get(client, archive, archive.ct_instance(1) + "/rendered")),
                          viewer_png(archive, series, 0))
    windowed = image(get(client, archive, archive.ct_instance(2) + "/rendered", {"window": "100,700,LINEAR"}))
    assert np.array_equal(windowed, viewer_png(archive, series, 1, window=Window(100, 700)))
    small = image(get(client, archive, archive.ct_instance(3) + "/rendered", {"viewport": "200,200"}))
    assert small.shape == (200, 200)
    assert np.array_equal(small, viewer_png(archive, series, 2, max_size=(200, 200)))
    jpeg = get(client, archive, archive.ct_instance(1) + "/rendered", accept=None)  # JPEG by default
    assert jpeg["Content-Type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"


def test_window_parameter_against_the_formulas(client, archive):
    source = pydicom.dcmread(DICOM_DIR / CT_SMALL)
    values = pixel_array(source).astype(np.float64) * float(source.RescaleSlope) + float(source.RescaleIntercept)
    path = archive.file_path(CT_SMALL) + "/rendered"
    seen = []
    for function in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        rendered = image(get(client, archive, path, {"window": f"40,400,{function}"}))
        assert np.array_equal(rendered, to_uint8(voi_window(values, 40, 400, function))), function
        seen.append(rendered)
    other = image(get(client, archive, path, {"window": "300,1500"}))  # the function defaults to LINEAR
    assert np.array_equal(other, to_uint8(voi_window(values, 300, 1500)))
    assert not np.array_equal(other, seen[0]) and not np.array_equal(seen[0], seen[2])
    default = image(get(client, archive, path))  # no window in the file: the frame's range
    low, high = values.min(), values.max()
    assert np.array_equal(default, to_uint8(voi_window(values, (low + high) / 2, high - low, "LINEAR_EXACT")))


def test_viewport_bounds_the_size_and_decodes_only_the_level_it_needs(client, archive, monkeypatch):
    decoded = []
    real = frames.decode_frame

    def spy(data, description, *, skip_levels=0):
        decoded.append(skip_levels)
        return real(data, description, skip_levels=skip_levels)

    monkeypatch.setattr(frames, "decode_frame", spy)
    monkeypatch.setattr(frames, "_decoded", frames.DecodedFrameCache(64 * 1024 * 1024))
    path = archive.ct_instance(1) + "/rendered"
    assert image(get(client, archive, path, {"viewport": "128,128"})).shape == (128, 128)
    assert decoded == [2]  # 512 -> 128: two resolution levels dropped, the full frame never decoded
    assert image(get(client, archive, path, {"viewport": "300,100"})).shape == (100, 100)  # aspect kept
    assert decoded == [2]  # 100x100 is drawn from the same level, already decoded
    assert image(get(client, archive, path, {"viewport": "256,256"})).shape == (256, 256)
    assert decoded == [2, 1]
    assert image(get(client, archive, path, {"viewport": "600,600"})).shape == (600, 600)  # grown to the viewport
    assert decoded == [2, 1, 0]
    # a region: the top left quarter at full size, and flipped by a negative width
    quarter = image(get(client, archive, path, {"viewport": "256,256,0,0,256,256"}))
    assert np.array_equal(quarter, image(get(client, archive, path))[:256, :256])
    flipped = image(get(client, archive, path, {"viewport": "256,256,256,0,-256,256"}))
    assert np.array_equal(flipped, quarter[:, ::-1])
    monkeypatch.setattr(frames, "_decoded", frames.DecodedFrameCache(64 * 1024 * 1024))
    assert image(get(client, archive, path, {"viewport": "64,64,256,256,,"})).shape == (64, 64)
    assert decoded[-1] == 2  # the lower right quarter (256 pixels) drawn at 64: two levels down


def test_monochrome1_is_inverted(client, archive):
    source = pydicom.dcmread(DICOM_DIR / CR_MONOCHROME1)
    values = pixel_array(source).astype(np.float64) * float(source.get("RescaleSlope", 1)) + float(
        source.get("RescaleIntercept", 0))
    rendered = image(get(client, archive, archive.file_path(CR_MONOCHROME1) + "/rendered", {"window": "1000,2000"}))
    assert np.array_equal(rendered, 255 - to_uint8(voi_window(values, 1000, 2000)))


def test_colour_file(client, archive):
    rendered = image(get(client, archive, archive.file_path(RGB) + "/rendered"))
    assert rendered.shape == (100, 100, 3)
    assert np.array_equal(rendered, pixel_array(pydicom.dcmread(DICOM_DIR / RGB)))
    gif = get(client, archive, archive.file_path(RGB) + "/rendered", accept="image/gif")
    assert gif["Content-Type"] == "image/gif" and gif.content[:6] in (b"GIF87a", b"GIF89a")


def test_frames_rendered_one_image_or_multipart(client, archive):
    source = archive.files[MULTIFRAME]
    path = archive.file_path(MULTIFRAME)
    view = image_set_view(datastore_id=archive.datastore.id,
                          image_set_id=archive.image_set(source.SeriesInstanceUID).id)
    frame3 = image(get(client, archive, path + "/frames/3/rendered"))
    assert np.array_equal(frame3, viewer_png(archive, source.SeriesInstanceUID, 2))
    assert len(view.frames(source.SeriesInstanceUID)) == 10
    several = get(client, archive, path + "/frames/5,3/rendered", accept='multipart/related; type="image/png"')
    assert several.status_code == 200, several.content
    assert several["Content-Type"].startswith('multipart/related; type="image/png"; boundary=')
    found = parts(several)
    assert [media for media, _ in found] == ["image/png", "image/png"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(found[1][1]))), frame3)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(found[0][1]))),
                          viewer_png(archive, source.SeriesInstanceUID, 4))
    assert len(parts(get(client, archive, path + "/frames/1,2/rendered", accept="*/*"))) == 2
    error(get(client, archive, path + "/frames/1,2/rendered", accept="image/png"), 406)  # one image asked, two frames


def test_study_and_series_rendered(client, archive):
    study, series, sops = archive.ct
    middle = image(get(client, archive, archive.ct_instance(2) + "/rendered"))
    assert np.array_equal(image(get(client, archive, f"{archive.base(study)}/series/{series}/rendered")), middle)
    scout = image(get(client, archive, archive.file_path("scout") + "/rendered"))
    assert scout.shape == (64, 64)
    assert np.array_equal(image(get(client, archive, f"{archive.base(study)}/rendered")), scout)  # its first series
    every = get(client, archive, f"{archive.base(study)}/rendered", {"viewport": "64,64"},
                accept='multipart/related; type="image/png"')
    found = parts(every)
    assert len(found) == 4  # the scout (series 1), then the CT slices (series 3) in instance number order
    expected = [archive.file_path("scout")] + [archive.ct_instance(number) for number in (1, 2, 3)]
    for path, (media, body) in zip(expected, found):
        assert media == "image/png"
        drawn = image(get(client, archive, path + "/rendered", {"viewport": "64,64"}))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), drawn)
    series_only = parts(get(client, archive, f"{archive.base(study)}/series/{series}/rendered",
                            accept='multipart/related; type="image/jpeg"'))
    assert [media for media, _ in series_only] == ["image/jpeg"] * 3


def test_thumbnails(client, archive):
    study, series, _ = archive.ct
    view = image_set_view(datastore_id=archive.datastore.id, image_set_id=archive.image_set(series).id)
    series_thumbnail = get(client, archive, f"{archive.base(study)}/series/{series}/thumbnail", accept="image/jpeg")
    assert series_thumbnail.status_code == 200 and series_thumbnail["Content-Type"] == "image/jpeg"
    assert series_thumbnail.content == frames.series_thumbnail(view=view, series_uid=series)  # the viewer's own
    scout = archive.files["scout"]
    scout_view = image_set_view(datastore_id=archive.datastore.id,
                                image_set_id=archive.image_set(scout.SeriesInstanceUID).id)
    study_thumbnail = get(client, archive, f"{archive.base(study)}/thumbnail", accept="image/jpeg")
    assert study_thumbnail.content == frames.series_thumbnail(view=scout_view, series_uid=scout.SeriesInstanceUID)
    instance = image(get(client, archive, archive.ct_instance(1) + "/thumbnail"))
    assert instance.shape == (128, 128)
    assert np.array_equal(instance, viewer_png(archive, series, 0, max_size=(128, 128)))
    bigger = image(get(client, archive, archive.ct_instance(1) + "/thumbnail", {"viewport": "200,200"}))
    assert bigger.shape == (200, 200)
    source = archive.files[MULTIFRAME]
    frame = image(get(client, archive, archive.file_path(MULTIFRAME) + "/frames/7/thumbnail"))
    assert np.array_equal(frame, viewer_png(archive, source.SeriesInstanceUID, 6, max_size=(128, 128)))
    middle = image(get(client, archive, archive.file_path(MULTIFRAME) + "/thumbnail"))
    assert np.array_equal(middle, viewer_png(archive, source.SeriesInstanceUID, 5, max_size=(128, 128)))


@pytest.mark.parametrize("query, named", [
    ({"window": "abc,400"}, "window center"), ({"window": "40"}, "window"), ({"window": "40,0"}, "window width"),
    ({"window": "40,0.5,LINEAR"}, "window width"), ({"window": "40,400,CUBIC"}, "window function"),
    ({"window": "nan,400"}, "window center"), ({"window": ["40,400", "50,400"]}, "window"),
    ({"viewport": "0,10"}, "viewport width"), ({"viewport": "a,b"}, "viewport width"),
    ({"viewport": "1,2,3"}, "viewport"), ({"viewport": "10,10,0,0,0,10"}, "viewport sw"),
    ({"viewport": "100000,10"}, "viewport width"), ({"viewport": "10,10,9999,0,,"}, "viewport region"),
    ({"quality": "0"}, "quality"), ({"quality": "101"}, "quality"), ({"quality": "high"}, "quality"),
    ({"quality": "5_0"}, "quality"), ({"viewport": "\u0661\u0662,10"}, "viewport width"),
], ids=lambda value: str(value))
def test_bad_parameters_are_400s_that_name_them(client, archive, query, named):
    message = error(get(client, archive, archive.ct_instance(1) + "/rendered", query), 400)
    assert named in message


def test_bad_accept_unknown_resources_and_frame_lists(client, archive):
    study, series, sops = archive.ct
    path = archive.ct_instance(1)
    error(get(client, archive, path + "/rendered", accept="application/dicom"), 406)
    error(get(client, archive, path + "/thumbnail", accept="image/jp2"), 406)
    error(get(client, archive, path + "/rendered", accept="image/png;q=0, text/html"), 406)
    assert get(client, archive, path + "/rendered", accept="text/html;q=0.9, image/png;q=0.5")["Content-Type"] \
        == "image/png"
    error(get(client, archive, f"{archive.base(generate_uid())}/rendered"), 404)
    error(get(client, archive, f"{archive.base(study)}/series/{generate_uid()}/thumbnail"), 404)
    error(get(client, archive, f"{archive.base(study)}/series/{series}/instances/{generate_uid()}/rendered"), 404)
    error(get(client, archive, path + "/frames/2/rendered"), 404)  # one frame only
    for frame_list in ("0", "1,1", "a", "1,,2", "%C2%B2", "1_0"):
        error(get(client, archive, path + f"/frames/{frame_list}/rendered"), 400)
    error(get(client, archive, path + "/frames/1,2/thumbnail"), 400)


def test_image_set_pinning_authorization_touch_and_audit(client, archive):
    study, series, _ = archive.ct
    image_set = archive.image_set(series)
    other = archive.image_set(archive.files[RGB].SeriesInstanceUID)
    path = archive.ct_instance(1) + "/rendered"
    assert get(client, archive, path, {"imageSetId": image_set.id}).status_code == 200
    error(get(client, archive, path, {"imageSetId": other.id}), 404)  # that image set holds another study
    image_set.refresh_from_db()
    assert image_set.last_accessed_at is not None
    events = AuditEvent.objects.filter(event_name="GetDICOMRendered", image_set_id=image_set.id)
    assert events.exists()
    assert not get(client, archive, archive.ct_instance(1) + "/thumbnail").status_code == 403
    assert AuditEvent.objects.filter(event_name="GetDICOMThumbnail").exists()
    read_only = accesskey_create(user=personas.clinician(archive.datastore, username="render-reader"),
                                 policy=ManagedPolicy.READ_ONLY)
    assert get(client, archive, path, key=read_only).status_code == 200
    denied = accesskey_create(user=personas.clinician(archive.datastore, username="render-denied"),
                              policy=ManagedPolicy.CUSTOM, policy_document={"Version": "2012-10-17", "Statement": [
                                  {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
                                  {"Effect": "Deny", "Action": "medical-imaging:GetDICOMRendered",
                                   "Resource": image_set.arn}]})
    assert "GetDICOMRendered" in error(get(client, archive, path, key=denied), 403)
    assert get(client, archive, archive.ct_instance(1) + "/thumbnail", key=denied).status_code == 200
    outsider = accesskey_create(user=personas.outsider(username="render-outsider"))
    error(get(client, archive, path, key=outsider), 403)


def test_a_picture_already_drawn_is_served_from_the_cache(client, archive, monkeypatch):
    path = archive.ct_instance(1) + "/rendered"
    first = get(client, archive, path, {"window": "10,300", "quality": "80"}, accept="image/jpeg")
    monkeypatch.setattr(frames, "encode_image", lambda *args, **kwargs: pytest.fail("drawn again"))
    again = get(client, archive, path, {"window": "10,300", "quality": "80"}, accept="image/jpeg")
    assert again.status_code == 200 and again.content == first.content
    with pytest.raises(pytest.fail.Exception):
        get(client, archive, path, {"window": "10,300", "quality": "81"}, accept="image/jpeg")
