"""What the two SigV4 transports share: the HealthImaging API (imaging/api) and the DICOMweb routes
(imaging/dicomweb) are signed the same way and answer errors in the same AWS JSON envelope.

  * `sigv4`    the Signature Version 4 algorithm, one function per step (no Django);
  * `envelope` the one table that turns our exceptions into AWS error responses;
  * `signed`   the one wrapper for a signed route: request id, body limit, authentication, throttling,
               authorization, the error table, metrics and the audit trail.

It sits below both transports, which never import each other; it must not import them either.
"""
