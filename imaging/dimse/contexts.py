"""The presentation contexts the listener supports, as lists each capability extends.

STORAGE offers every storage SOP class pynetdicom knows (all of them, not the 120 a requestor may propose),
and the retired ones old modalities still send, with each transfer syntax the importer reads: pydicom
decodes the received dataset (imaging/codecs/dataset_pixels), native, deflated and big endian included, and the
compressed syntaxes through its pixel plugins. Query and retrieve modules append their models to QUERY and
RETRIEVE. Which of these a given peer may use is decided per association (peer.py: may_store, may_query,
may_retrieve); the lists here are what the listener can do at all.
"""
from __future__ import annotations

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, build_context, register_uid, sop_class
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

# Uncompressed first: a requestor that proposes several syntaxes in one context gets the first one both support.
STORAGE_TRANSFER_SYNTAXES: list[str] = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K, RLELossless,
]
# What query and retrieve answers are encoded in (their identifiers carry no pixels).
NON_PIXEL_TRANSFER_SYNTAXES: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# Retired storage SOP classes older modalities still send (PS3.6 A.1): ultrasound and nuclear medicine from before
# 1996, X-ray angiographic bi-plane.
RETIRED_STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.3": "UltrasoundMultiFrameImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.5": "NuclearMedicineImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.6": "UltrasoundImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.12.3": "XRayAngiographicBiPlaneImageStorageRetired",
}
# pynetdicom answers a C-STORE only for SOP classes it knows to be storage: these it must be told of.
for _uid, _keyword in RETIRED_STORAGE_SOP_CLASSES.items():
    if not hasattr(sop_class, _keyword):
        register_uid(_uid, _keyword, StorageServiceClass)

VERIFICATION: list[PresentationContext] = [build_context(Verification, NON_PIXEL_TRANSFER_SYNTAXES)]
STORAGE: list[PresentationContext] = [
    build_context(sop_class, STORAGE_TRANSFER_SYNTAXES)
    for sop_class in [*(context.abstract_syntax for context in AllStoragePresentationContexts),
                      *RETIRED_STORAGE_SOP_CLASSES]
]
QUERY: list[PresentationContext] = [
    build_context(PatientRootQueryRetrieveInformationModelFind, NON_PIXEL_TRANSFER_SYNTAXES),  # find.py
    build_context(StudyRootQueryRetrieveInformationModelFind, NON_PIXEL_TRANSFER_SYNTAXES),
]
RETRIEVE: list[PresentationContext] = []


def supported_contexts() -> list[PresentationContext]:
    """Every context the listener offers, in the order above (read when a server starts, after the capability
    modules have extended the lists)."""
    return [*VERIFICATION, *STORAGE, *QUERY, *RETRIEVE]


def abstract_syntaxes(contexts: list[PresentationContext]) -> frozenset[str]:
    return frozenset(str(context.abstract_syntax) for context in contexts)
