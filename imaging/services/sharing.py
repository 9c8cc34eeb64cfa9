"""Share links for embedding the viewer (issue 6): a signed token naming a ShareLink row, so a link can be checked
without the database (tampering), and expired or revoked through it. Tokens are never logged (imaging.logging
redacts /share/ paths and share= query values)."""
from __future__ import annotations

import enum
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.dispatch import Signal
from django.utils import timezone

from imaging.dicom.window_presets import window_preset_get, window_presets_describe
from imaging.errors import AccessDenied, NotFound, ValidationFailed
from imaging.models import ImageSet, ImageSetState, ShareLink

_SALT = "aperture.share-link"
# Stable tokens are signed under their own salt: a timestamped token's signature also covers "payload:timestamp",
# so under one salt each format would pass the other's signature check.
_STABLE_SALT = "aperture.share-link.stable"

# Sent with `link_ids` after links are revoked, so whatever they opened (the viewer's sockets) can close.
share_link_revoked = Signal()


class ShareLinkProblem(enum.Enum):
    """Why a share link does not open. The value is the sentence the error page shows; callers branch on the member,
    never on the sentence."""

    ALTERED = "This link is not valid. It may have been altered or copied incompletely."
    UNKNOWN = "This link is not valid."
    REVOKED = "This link has been revoked."
    EXPIRED = "This link has expired."
    OTHER_USER = "This link is for a particular user. Sign in as that user to open it."


class ShareLinkInvalid(Exception):
    """The link is tampered with, unknown, expired, revoked or bound to another user: `problem` says which, `reason`
    is the sentence for the error page."""

    def __init__(self, problem: ShareLinkProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.reason = problem.value

    @property
    def needs_login(self) -> bool:
        """Whether signing in, as the user the link is bound to, would open it."""
        return self.problem is ShareLinkProblem.OTHER_USER


class ShareLinkTargetError(Exception):
    """What a new link would open, or for how long, is not acceptable. `field` names the argument at fault, so a
    form can show the message beside it; `error` is the domain error raised where no form shows it."""

    def __init__(self, field: str, error: ValidationFailed | NotFound) -> None:
        super().__init__(error.message)
        self.field = field
        self.error = error


def share_link_target(*, datastore_id: str, study_uid: str = "", image_set_id: str = "", expires_in: timedelta,
                      window_preset: str = "") -> str:
    """Check what a new link would open and for how long, before anything is written; returns the study's UID.

    Raises ShareLinkTargetError naming the problem and the argument at fault."""
    if expires_in <= timedelta(0) or expires_in > timedelta(days=settings.APERTURE_SHARE_LINK_MAX_DAYS):
        raise ShareLinkTargetError("expires_in", ValidationFailed(
            f"A share link expires within {settings.APERTURE_SHARE_LINK_MAX_DAYS} days"))
    if window_preset and window_preset_get(key=window_preset) is None:
        raise ShareLinkTargetError("window_preset", ValidationFailed(f"window_preset is {window_presets_describe()}"))
    if image_set_id:
        image_set = ImageSet.objects.filter(pk=image_set_id, datastore_id=datastore_id).exclude(
            state=ImageSetState.DELETED).first()
        if image_set is None:
            raise ShareLinkTargetError("image_set_id", NotFound("No such image set in this data store"))
        return image_set.study_instance_uid
    if not study_uid:
        raise ShareLinkTargetError("study_uid", ValidationFailed("Name a study or an image set"))
    if not ImageSet.objects.filter(datastore_id=datastore_id, study_instance_uid=study_uid).exclude(
            state=ImageSetState.DELETED).exists():
        raise ShareLinkTargetError("study_uid", NotFound("No such study in this data store"))
    return study_uid


def share_link_create(*, created_by, datastore_id: str, study_uid: str = "", image_set_id: str = "",
                      expires_in: timedelta, bound_user=None, hide_browser: bool = True, initial_series: str = "",
                      window_preset: str = "") -> tuple[ShareLink, str]:
    try:
        study_uid = share_link_target(datastore_id=datastore_id, study_uid=study_uid, image_set_id=image_set_id,
                                      expires_in=expires_in, window_preset=window_preset)
    except ShareLinkTargetError as e:
        raise e.error from None
    link = ShareLink.objects.create(
        datastore_id=datastore_id, study_instance_uid=study_uid, image_set_id=image_set_id, created_by=created_by,
        bound_user=bound_user, expires_at=timezone.now() + expires_in, hide_browser=hide_browser,
        initial_series=initial_series, window_preset=window_preset)
    return link, share_token(link)


def share_token(link: ShareLink) -> str:
    """The link's token: the same every time it is shown (no timestamp in it; expiry lives in the row), so the
    link an admin copied is the link the admin pages show."""
    return signing.Signer(salt=_STABLE_SALT).sign_object(str(link.id))


def _link_id(token: str) -> str:
    try:
        return signing.Signer(salt=_STABLE_SALT).unsign_object(token)
    except signing.BadSignature:
        return signing.loads(token, salt=_SALT)  # links issued before tokens were stable carried a timestamp


def share_link_resolve(token: str, *, user=None) -> ShareLink:
    try:
        link_id = _link_id(token)
    except signing.BadSignature as e:
        raise ShareLinkInvalid(ShareLinkProblem.ALTERED) from e
    link = ShareLink.objects.filter(pk=link_id).select_related("datastore").first()
    if link is None:
        raise ShareLinkInvalid(ShareLinkProblem.UNKNOWN)
    if link.revoked_at is not None:
        raise ShareLinkInvalid(ShareLinkProblem.REVOKED)
    if link.expires_at <= timezone.now():
        raise ShareLinkInvalid(ShareLinkProblem.EXPIRED)
    if link.bound_user_id is not None and (user is None or user.pk != link.bound_user_id):
        raise ShareLinkInvalid(ShareLinkProblem.OTHER_USER)
    return link


def share_link_revoke(*, link_id) -> None:
    if ShareLink.objects.filter(pk=link_id, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        share_link_revoked.send(sender=ShareLink, link_ids=[link_id])


def share_link_covers(link: ShareLink, *, datastore_id: str, image_set_id: str) -> bool:
    if link.datastore_id != datastore_id:
        return False
    if link.image_set_id:
        return link.image_set_id == image_set_id
    return ImageSet.objects.filter(pk=image_set_id, datastore_id=datastore_id,
                                   study_instance_uid=link.study_instance_uid).exists()


def share_access(token: str | None, *, user, datastore_id: str, image_set_id: str) -> ShareLink:
    if not token:
        raise AccessDenied("No share link")
    try:
        link = share_link_resolve(token, user=user)
    except ShareLinkInvalid as e:
        raise AccessDenied(e.reason) from e
    if not share_link_covers(link, datastore_id=datastore_id, image_set_id=image_set_id):
        raise AccessDenied("The share link does not cover this image set")
    return link
