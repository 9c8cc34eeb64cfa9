"""The render service, below the transports so that the viewer (pages, websocket) and DICOMweb's rendered resources
draw frames the same way and share one set of caches: pixels.py (decode, Modality/VOI LUT, colour, encode; no
request, no database), frames.py (which frame, cached decodes, LUT tables and encoded images) and imagemeta.py (what
an image set version holds for drawing). Nothing here checks access: callers hand over what they were allowed to
open."""
