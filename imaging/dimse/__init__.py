"""DICOM networking (DIMSE): the listener that modalities, PACS and workstations associate with.

`listener.py` runs pynetdicom's association servers (plain and TLS); `peer.py` decides, once per association, which
data store the called AE title names and what the calling node may do; `contexts.py` lists the presentation contexts
offered; `handlers.py` binds each service (C-ECHO here, C-STORE in `store.py`, C-FIND, C-MOVE/C-GET beside them).
Modules here may use Django and the services; pure DICOM helpers belong in imaging/dicom.
"""
