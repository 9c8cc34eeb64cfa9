"""C-STORE SCU: send instances of the store to a known DICOM node on one association ("Send to").

The contexts offered and the syntax each instance goes in are outgoing.py's: the stored HTJ2K where the node
accepted it, else decoded losslessly to Explicit (or Implicit) VR Little Endian. Each C-STORE's status is counted
as success (0x0000), warning (0xB000 range and 0x0107/0x0116: the node kept the instance) or failure; an instance
the node accepted no context for fails alone. A lost association fails what was left.

No Django request or model writes here: the caller (imaging.services.dicom_send) records progress.
"""
from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Callable

from django.conf import settings
from pynetdicom import AE

from imaging.dimse.outgoing import (
    InstanceBuilder,
    InstanceRef,
    InstanceUnavailable,
    accepted_syntaxes,
    offered_contexts,
    syntax_choose,
)
from imaging.dimse.sockets import CONNECTION_HANDLERS
from imaging.models import DicomNode

logger = logging.getLogger(__name__)

WARNING_STATUSES = {0x0107, 0x0116}


class SendFailed(Exception):
    """No association could be made with the node (refused, unreachable, nothing negotiated)."""


@dataclass
class SendProgress:
    """Counts so far: sent (success and warning), of them with a warning, and failed."""

    total: int
    sent: int = 0
    warnings: int = 0
    failed: int = 0


def status_kind(status: int) -> str:
    """'success', 'warning' or 'failure' of a C-STORE response status (PS3.4 B.2.3)."""
    if status == 0x0000:
        return "success"
    if status in WARNING_STATUSES or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


def tls_arguments(node: DicomNode) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's tls_args for a node that speaks DICOM TLS: the node verified against APERTURE_DICOM_TLS_CA (the
    system's trust store without one), and our certificate offered when one is configured."""
    if not node.use_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.APERTURE_DICOM_TLS_CA or None)
    if settings.APERTURE_DICOM_TLS_CERT and settings.APERTURE_DICOM_TLS_KEY:
        context.load_cert_chain(settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY)
    return context, node.host


def send_instances(*, node: DicomNode, instances: list[InstanceRef], calling_ae_title: str,
                   progress: Callable[[SendProgress], None] | None = None) -> SendProgress:
    """Send `instances` to `node` on one association; `progress` is called after each instance."""
    counts = SendProgress(total=len(instances))
    if not instances:
        return counts
    ae = AE(ae_title=calling_ae_title)
    timeout = settings.APERTURE_DICOM_TIMEOUT_SECONDS
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    association = ae.associate(node.host, node.port, contexts=offered_contexts(instances), ae_title=node.ae_title,
                               tls_args=tls_arguments(node), evt_handlers=CONNECTION_HANDLERS)
    if not association.is_established:
        raise SendFailed(f"{node.ae_title} at {node.host}:{node.port} refused the association or could not be reached")
    try:
        accepted = accepted_syntaxes(association.accepted_contexts, as_scu=True)
        builder = InstanceBuilder()
        for position, ref in enumerate(instances):
            if not association.is_established:
                counts.failed += len(instances) - position
                break
            outcome = _send_one(association, builder, ref, accepted.get(ref.sop_class_uid, set()))
            if outcome == "failure":
                counts.failed += 1
            else:
                counts.sent += 1
                counts.warnings += outcome == "warning"
            if progress is not None:
                progress(counts)
    finally:
        if association.is_established:
            association.release()
    return counts


def _send_one(association, builder: InstanceBuilder, ref: InstanceRef, accepted: set[str]) -> str:
    syntax = syntax_choose(ref, accepted)
    if syntax is None:
        logger.warning("send: no accepted presentation context fits an instance of SOP class %s stored as %s",
                       ref.sop_class_uid, ref.stored_syntax)
        return "failure"
    try:
        dataset = builder.dataset(ref, syntax)
    except InstanceUnavailable as e:
        logger.warning("send: an instance could not be built from the store (%s)", e)
        return "failure"
    try:
        response = association.send_c_store(dataset)
    except (ValueError, AttributeError, RuntimeError) as e:
        # The type only: pynetdicom's and pydicom's messages name the instance's values.
        logger.warning("send: an instance could not be encoded for its presentation context (%s)",
                       type(e).__name__)
        return "failure"
    if response is None or "Status" not in response:
        return "failure"
    return status_kind(int(response.Status))
