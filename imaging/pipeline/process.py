"""One file through the per-file steps of an import (SPEC 4.3), as the worker processes run it; no Django.

read (imaging.pipeline.sources, imaging.dicom.reader) -> check -> normalize (imaging.pipeline.normalize) ->
transcode and verify every frame (imaging.pipeline.transcode) -> store the frames (imaging.pipeline.frame_store).
This module only strings the steps together and turns a step's failure into the file's failure: a file that fails
any step yields a failed FileResult and nothing of it is kept. It never raises for a file's own problem.
"""
from __future__ import annotations

import logging
import warnings

from imaging.codecs.dataset_pixels import PixelDataError, describe, is_decoder_panic
from imaging.dicom.normalize import normalize_dataset
from imaging.dicom.reader import DEFAULT_LIMITS, DecodeLimits, DicomInputError, check_instance, read_p10
from imaging.pipeline.frame_store import FrameSink, frames_store
from imaging.pipeline.normalize import flat_values, instance_record
from imaging.pipeline.results import FileResult, FrameIds
from imaging.pipeline.sources import S3Settings, SourceError, read_object
from imaging.pipeline.transcode import VerificationError, transcode_frames

# Worker processes must not echo DICOM values (patient data) into logs: pydicom's value warnings are silenced.
import pydicom.config  # noqa: E402

pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
logging.getLogger("pydicom").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="pydicom")


def process_source(uri: str, display_name: str, s3: S3Settings, storage_format: str,
                   sink: FrameSink | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> FileResult:
    """Read one object, run it through the pipeline and store its frames; never raises.

    Frames are written only once the whole file has been processed and verified, and their bytes are then dropped
    from the result, so only metadata travels back to the job driver.
    """
    result = FileResult(input_file=display_name)
    try:
        source_bytes = read_object(uri, s3)
    except SourceError as e:
        return result.fail("ValidationException", str(e))
    frame_ids = FrameIds(sink.job_id, uri) if sink is not None else FrameIds()
    result = process_bytes(source_bytes, result, storage_format=storage_format, frame_ids=frame_ids, limits=limits)
    if result.ok and sink is not None:
        return frames_store(result, sink)
    return result


def process_bytes(source_bytes: bytes, result: FileResult, *, storage_format: str = "HTJ2K",
                  frame_ids: FrameIds | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> FileResult:
    """One file through SPEC 4.3, its frames kept in the result. The search-key length limits (4.6) are left to
    the job driver (json_metadata.finish_instance), which checks them once the job's JSON metadata is applied."""
    result.source_bytes = len(source_bytes)
    try:
        dataset = read_p10(source_bytes, limits)
        transfer_syntax = str(dataset.file_meta.TransferSyntaxUID)
        notes = normalize_dataset(dataset)
        values = flat_values(notes)
        check_instance(values, notes.unreadable)
        description = describe(dataset, transfer_syntax)
        frames, frame_infos, stored_syntax = transcode_frames(dataset, description, storage_format,
                                                              frame_ids or FrameIds())
    except DicomInputError as e:
        return result.fail("InternalServerException" if e.server_fault else "ValidationException", e.message)
    except PixelDataError as e:
        return result.fail("ValidationException", str(e))
    except VerificationError as e:
        return result.fail("InternalServerException", str(e))
    except BaseException as e:  # a decoder or encoder crash on odd input is still this file's failure, not the job's
        if not isinstance(e, Exception) and not is_decoder_panic(e):
            raise
        return result.fail("InternalServerException", f"Unexpected error while processing the file: {type(e).__name__}")
    return instance_record(result, notes, values, has_pixels=description is not None, frames=frames,
                           frame_infos=frame_infos, stored_syntax=stored_syntax)
