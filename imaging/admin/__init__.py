"""Admin pages, one module per model: data stores (with their import and delete pages), import jobs, image sets
(with "Send to DICOM node…"), DICOM nodes, DICOM sends, share links, the audit trail, frame scrubs, users with their
data store grants, access keys, personal access tokens and roles. Importing this package registers them all.

Pages only: every write goes through the same services as the API, every total through a selector. No business
rule lives here.
"""
from __future__ import annotations

from imaging.admin import (
    accesskeys,
    accesstokens,
    audit,
    datastores,
    dicomnodes,
    dicomsends,
    imagesets,
    imports,
    roles,
    scrubs,
    sharelinks,
    users,
)

__all__ = ["accesskeys", "accesstokens", "audit", "datastores", "dicomnodes", "dicomsends", "imagesets", "imports",
           "roles", "scrubs", "sharelinks", "users"]
