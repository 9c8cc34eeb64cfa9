"""Association control (imaging/dimse/peer.py): which data store a called AE title names, who may associate and
what they may do; and the presentation contexts that follow (listener.contexts_for)."""
from __future__ import annotations

import pytest

from imaging.dimse import contexts
from imaging.dimse.listener import contexts_for
from imaging.dimse.peer import (
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_NO_REASON,
    Peer,
    Refusal,
    address_matches,
    peer_decide,
)
from imaging.models import Datastore, DatastoreStatus, DicomNode

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(db):
    return Datastore.objects.create(name="ct", status=DatastoreStatus.ACTIVE, ae_title="CT_STORE")


def decide(called: str, calling: str = "MODALITY", address: str = "127.0.0.1"):
    return peer_decide(called_ae_title=called, calling_ae_title=calling, address=address)


class TestCalledAETitle:
    def test_a_data_store_ae_title_names_it(self, store, settings):
        settings.APERTURE_DICOM_ALLOW_ANY = True
        peer = decide("CT_STORE ")  # AE titles arrive space-padded
        assert isinstance(peer, Peer)
        assert (peer.datastore_id, peer.called_ae_title, peer.calling_ae_title) == (store.id, "CT_STORE", "MODALITY")
        assert peer.may_store and peer.may_query and peer.may_retrieve and peer.node_id is None

    def test_the_listener_title_goes_to_the_default_data_store(self, store, settings):
        settings.APERTURE_DICOM_ALLOW_ANY = True
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = store.id
        assert decide(settings.APERTURE_DICOM_AET).datastore_id == store.id

    def test_the_listener_title_without_a_default_is_for_echo_only(self, settings, db):
        settings.APERTURE_DICOM_ALLOW_ANY = True
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = ""
        peer = decide(settings.APERTURE_DICOM_AET)
        assert peer.datastore_id == "" and not (peer.may_store or peer.may_query or peer.may_retrieve)

    def test_a_default_that_names_nothing_is_refused(self, settings, db):
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = "0" * 32
        assert decide(settings.APERTURE_DICOM_AET).reject == REJECT_CALLED_AE

    def test_an_unknown_title_is_refused(self, store):
        refusal = decide("NOBODY")
        assert isinstance(refusal, Refusal) and refusal.reject == REJECT_CALLED_AE
        assert refusal.reason == "called AE title not recognised"

    def test_a_data_store_that_is_not_active_is_refused(self, store):
        Datastore.objects.filter(pk=store.id).update(status=DatastoreStatus.DELETING)
        refusal = decide("CT_STORE")
        assert (refusal.reject, refusal.datastore_id) == (REJECT_NO_REASON, store.id)


class TestKnownNodes:
    @pytest.fixture(autouse=True)
    def strict(self, settings):
        settings.APERTURE_DICOM_ALLOW_ANY = False

    def test_a_known_node_from_its_host_gets_its_own_rights(self, store):
        node = DicomNode.objects.create(ae_title="MODALITY", host="localhost", port=104, may_store=True)
        peer = decide("CT_STORE")
        assert (peer.node_id, peer.may_store, peer.may_query, peer.may_retrieve) == (node.id, True, False, False)

    def test_an_unknown_calling_title_is_refused(self, store):
        refusal = decide("CT_STORE", calling="STRANGER")
        assert refusal.reject == REJECT_CALLING_AE and refusal.reason == "calling AE title not recognised"

    def test_a_known_title_from_another_address_is_refused(self, store):
        DicomNode.objects.create(ae_title="MODALITY", host="192.0.2.7", port=104, may_store=True)
        assert decide("CT_STORE", address="127.0.0.1").reject == REJECT_CALLING_AE
        assert isinstance(decide("CT_STORE", address="192.0.2.7"), Peer)


class TestNodeDatastores:
    """A node limited to some data stores may call only their AE titles; an empty list means every data store."""

    @pytest.fixture(autouse=True)
    def strict(self, settings):
        settings.APERTURE_DICOM_ALLOW_ANY = False

    @pytest.fixture
    def other_store(self, db):
        return Datastore.objects.create(name="mr", status=DatastoreStatus.ACTIVE, ae_title="MR_STORE")

    @pytest.fixture
    def ct_only_node(self, store):
        node = DicomNode.objects.create(ae_title="MODALITY", host="localhost", port=104, may_query=True,
                                        may_retrieve=True)
        node.datastores.set([store])
        return node

    def test_a_node_without_a_list_may_call_every_data_store(self, store, other_store):
        DicomNode.objects.create(ae_title="MODALITY", host="localhost", port=104, may_retrieve=True)
        assert decide("CT_STORE").datastore_id == store.id
        assert decide("MR_STORE").datastore_id == other_store.id

    def test_a_listed_data_store_may_be_called(self, store, other_store, ct_only_node):
        peer = decide("CT_STORE")
        assert (peer.datastore_id, peer.node_id, peer.may_retrieve) == (store.id, ct_only_node.id, True)

    def test_a_data_store_not_listed_is_refused(self, store, other_store, ct_only_node):
        refusal = decide("MR_STORE")
        assert isinstance(refusal, Refusal)
        assert (refusal.reject, refusal.datastore_id) == (REJECT_CALLED_AE, other_store.id)
        assert refusal.reason == "calling AE title may not call this data store's AE title (MR_STORE)"

    def test_the_listener_title_for_echo_stays_open(self, store, other_store, ct_only_node, settings):
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = ""
        peer = decide(settings.APERTURE_DICOM_AET)
        assert peer.datastore_id == "" and not (peer.may_store or peer.may_query or peer.may_retrieve)

    def test_the_listener_title_follows_its_default_data_store(self, store, other_store, ct_only_node, settings):
        settings.APERTURE_DICOM_DEFAULT_DATASTORE = other_store.id
        assert decide(settings.APERTURE_DICOM_AET).reject == REJECT_CALLED_AE

    def test_allow_any_ignores_the_list(self, store, other_store, ct_only_node, settings):
        settings.APERTURE_DICOM_ALLOW_ANY = True
        assert decide("MR_STORE").datastore_id == other_store.id


@pytest.mark.parametrize("host, address, matches", [
    ("127.0.0.1", "127.0.0.1", True), ("localhost", "127.0.0.1", True), ("127.0.0.1", "::ffff:127.0.0.1", True),
    ("192.0.2.7", "127.0.0.1", False), ("no-such-host.invalid", "127.0.0.1", False), ("127.0.0.1", "junk", False),
])
def test_address_matches(host, address, matches):
    assert address_matches(host=host, address=address) is matches


def peer(**rights) -> Peer:
    flags = {"may_store": False, "may_query": False, "may_retrieve": False, **rights}
    return Peer(datastore_id="d", called_ae_title="A", calling_ae_title="B", address="127.0.0.1", node_id=None,
                **flags)


@pytest.mark.parametrize("rights, storage", [({}, False), ({"may_store": True}, True), ({"may_query": True}, False),
                                             ({"may_retrieve": True}, True)])
def test_contexts_follow_the_rights(rights, storage):
    offered = contexts.supported_contexts()
    allowed = {str(context.abstract_syntax) for context in contexts_for(peer(**rights), offered)}
    assert allowed >= contexts.abstract_syntaxes(contexts.VERIFICATION)
    assert (allowed >= contexts.abstract_syntaxes(contexts.STORAGE)) is storage
    assert bool(allowed & contexts.abstract_syntaxes(contexts.STORAGE)) is storage


@pytest.mark.parametrize("cert, key, ca", [("c.pem", "", ""), ("", "k.pem", ""), ("", "", "ca.pem")])
def test_half_a_tls_configuration_fails_at_start_naming_the_variables(settings, cert, key, ca):
    from django.core.exceptions import ImproperlyConfigured

    from imaging.dimse.listener import tls_context

    settings.APERTURE_DICOM_TLS_CERT, settings.APERTURE_DICOM_TLS_KEY, settings.APERTURE_DICOM_TLS_CA = cert, key, ca
    with pytest.raises(ImproperlyConfigured, match="APERTURE_DICOM_TLS_CERT and APERTURE_DICOM_TLS_KEY"):
        tls_context()
