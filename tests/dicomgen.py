"""Generated DICOM P10 files for tests: a small valid CT instance, and ways to break one."""
from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def ct_dataset(*, study_uid: str, series_uid: str, sop_uid: str | None = None, instance_number: int = 1,
               patient_name: str = "DOE^JANE", patient_id: str = "PID-1", rows: int = 64, columns: int = 64,
               pixels: np.ndarray | None = None, seed: int = 0) -> Dataset:
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "S1"
    ds.Modality = "CT"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = str(instance_number)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "1.0"
    ds.ImagePositionPatient = ["0", "0", str(instance_number)]
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "-1024"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.add_new(0x00091010, "LO", "private value")
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if pixels is None:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def to_bytes(ds: Dataset, *, write_like_original: bool = False) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=not write_like_original)
    return buffer.getvalue()


def ct_bytes(**kwargs) -> bytes:
    return to_bytes(ct_dataset(**kwargs))


def reduced_resolution(samples: np.ndarray, skip: int) -> np.ndarray:
    """What a JPEG 2000 decoder gives at `skip` levels below full resolution for a reversible 5/3 codestream: the
    LL band, computed here from the samples with the lifting steps and symmetric extension of ITU-T T.800 Annex F
    (vertical then horizontal), independently of any codec."""
    result = samples.astype(np.int64)
    for _ in range(skip):
        result = _low_pass_53(_low_pass_53(result, 0), 1)
    return result


def _low_pass_53(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    if n == 1:
        return np.moveaxis(x, 0, axis)
    even, odd = x[0::2], x[1::2]
    right = np.concatenate([even[1:], x[n - 2: n - 1]]) if n % 2 == 0 else even[1:]
    d = odd - (even[: len(odd)] + right) // 2
    left_d = np.concatenate([d[:1], d])[: len(even)]
    right_d = d if len(d) == len(even) else np.concatenate([d, d[-1:]])
    s = even + (left_d + right_d + 2) // 4
    return np.moveaxis(s, 0, axis)
