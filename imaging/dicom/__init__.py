"""Pure DICOM: reading P10 files, normalizing metadata, transfer syntax facts. No Django here."""
