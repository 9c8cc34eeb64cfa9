"""p10_identity (imaging/dicom/identity.py), which STOW-RS asks of every part before the pipeline sees it: hostile
bytes are "no identity" (the part fails with 0xC000), never an exception that would fail the whole request."""
from __future__ import annotations

import random
import warnings

from imaging.dicom.identity import p10_identity
from tests.paths import DICOM_DIR


def test_the_uids_of_a_file():
    found = p10_identity(DICOM_DIR / "ELE__CT_small.dcm")
    assert found is not None and found.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def test_corrupted_files_have_no_identity_and_raise_nothing(tmp_path):
    # Seeded byte flips in the dataset: these include pydicom's BytesLengthException and NotImplementedError
    # (an unknown VR), which a narrower except let through as a 500.
    source = (DICOM_DIR / "ELE__CT_small.dcm").read_bytes()[:4000]
    rng = random.Random(3)
    path = tmp_path / "part.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(800):
            corrupted = bytearray(source)
            for _ in range(rng.randrange(1, 6)):
                corrupted[rng.randrange(132, len(corrupted))] = rng.randrange(256)
            path.write_bytes(bytes(corrupted))
            p10_identity(path)  # None or an identity; never an exception
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00\x16\x00ZZ\x04\x00abcd")
    assert p10_identity(path) is None
