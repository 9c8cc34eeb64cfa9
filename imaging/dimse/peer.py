"""Association control: who is calling, which data store they called, and what they may do there.

Decided once, when the A-ASSOCIATE request arrives (`peer_decide`), and kept on the association for every handler
(`peer_of(event)`):

- The called AE title picks the data store: a Datastore whose `ae_title` it is, or APERTURE_DICOM_AET for
  APERTURE_DICOM_DEFAULT_DATASTORE. APERTURE_DICOM_AET with no default data store is still accepted, for C-ECHO only
  (a node checking that Aperture is up); any other title is rejected ("called AE title not recognised"), and so is
  one whose data store is not ACTIVE.
- With APERTURE_DICOM_ALLOW_ANY false only a DicomNode with the calling AE title, connecting from one of the
  addresses its host name resolves to, may associate ("calling AE title not recognised"); its may_store, may_query
  and may_retrieve say which presentation contexts it is offered (listener.py). A node with a non-empty `datastores`
  list may call only those data stores' AE titles (another is rejected permanently with the reason "called AE title
  not recognised", and audited as "calling AE title may not call this data store's AE title"); an empty list means
  every data store. The list is about calling only: any node may be a C-MOVE destination or a Send to target.
  APERTURE_DICOM_AET without a default data store (C-ECHO only) is open to every known node. With ALLOW_ANY true
  anyone may do anything.

Nothing here logs patient data; AE titles and addresses are not patient data.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from django.conf import settings

from imaging.models import Datastore, DatastoreStatus, DicomNode

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (PS3.8 9.3.4): (result, source, reason). Result 1 is rejected-permanent, source 1 the service user.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_NO_REASON = (0x01, 0x01, 0x01)


@dataclass(frozen=True)
class Peer:
    datastore_id: str  # "" for APERTURE_DICOM_AET without a default data store: verification only
    called_ae_title: str
    calling_ae_title: str
    address: str
    node_id: int | None
    may_store: bool
    may_query: bool
    may_retrieve: bool


@dataclass(frozen=True)
class Refusal:
    """Why an association is rejected: the A-ASSOCIATE-RJ fields and the words for the audit trail."""
    reject: tuple[int, int, int]
    reason: str
    datastore_id: str = ""  # the data store called, when there is one (for the audit trail)


def peer_decide(*, called_ae_title: str, calling_ae_title: str, address: str) -> Peer | Refusal:
    """The Peer an association request becomes, or why it is refused."""
    called_ae_title, calling_ae_title = called_ae_title.strip(), calling_ae_title.strip()
    datastore = Datastore.objects.filter(ae_title=called_ae_title).only("id", "status").first()
    if datastore is None and called_ae_title == settings.APERTURE_DICOM_AET:
        default_id = settings.APERTURE_DICOM_DEFAULT_DATASTORE
        datastore = Datastore.objects.filter(pk=default_id).only("id", "status").first() if default_id else None
        if default_id and datastore is None:
            return Refusal(REJECT_CALLED_AE, "called AE title not recognised (APERTURE_DICOM_DEFAULT_DATASTORE "
                                             "names no data store)")
    elif datastore is None:
        return Refusal(REJECT_CALLED_AE, "called AE title not recognised")
    if datastore is not None and datastore.status != DatastoreStatus.ACTIVE:
        return Refusal(REJECT_NO_REASON, f"data store is {datastore.status}, not ACTIVE", datastore_id=datastore.id)
    node = DicomNode.objects.filter(ae_title=calling_ae_title).first()
    if settings.APERTURE_DICOM_ALLOW_ANY:
        may_store = may_query = may_retrieve = True
    elif node is None or not address_matches(host=node.host, address=address):
        return Refusal(REJECT_CALLING_AE, "calling AE title not recognised",
                       datastore_id=datastore.id if datastore else "")
    elif datastore is not None and not _node_may_call(node=node, datastore_id=datastore.id):
        return Refusal(REJECT_CALLED_AE, f"calling AE title may not call this data store's AE title "
                                         f"({called_ae_title})", datastore_id=datastore.id)
    else:
        may_store, may_query, may_retrieve = node.may_store, node.may_query, node.may_retrieve
    has_datastore = datastore is not None
    return Peer(
        datastore_id=datastore.id if has_datastore else "",
        called_ae_title=called_ae_title,
        calling_ae_title=calling_ae_title,
        address=address,
        node_id=node.id if node else None,
        may_store=may_store and has_datastore,
        may_query=may_query and has_datastore,
        may_retrieve=may_retrieve and has_datastore,
    )


def _node_may_call(*, node: DicomNode, datastore_id: str) -> bool:
    """Whether the node's data store list lets it call this data store; an empty list means every data store."""
    allowed = node.datastores.values_list("id", flat=True)
    return not allowed.exists() or allowed.filter(id=datastore_id).exists()


def address_matches(*, host: str, address: str) -> bool:
    """Whether `address` (the peer's IP) is one that `host` (a node's host name or address) resolves to. A name that
    does not resolve matches nothing."""
    peer = _normal_ip(address)
    if peer is None:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        logger.info("DICOM node host %r does not resolve", host)
        return False
    return any(_normal_ip(info[4][0]) == peer for info in infos)


def _normal_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def peer_of(event) -> Peer:
    """The Peer decided when the event's association was accepted."""
    return event.assoc.aperture_peer
