"""SigV4-signed DICOMweb GETs against a live server, as a DICOMweb client with AWS credentials sends them."""
from __future__ import annotations

import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_get(url: str, key: dict[str, str], *, accept: str | None = None, unsigned: dict[str, str] | None = None):
    """(status, headers, body) of a GET signed with the access key `key`; `unsigned` headers are added after
    signing, as a browser adds Origin."""
    request = AWSRequest(method="GET", url=url, headers={"Accept": accept} if accept else {})
    SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "medical-imaging", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), **(unsigned or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def instance_url(server_url: str, datastore_id: str, study: str, series: str, sop: str,
                 image_set_id: str | None = None) -> str:
    query = f"?imageSetId={image_set_id}" if image_set_id else ""
    return f"{server_url}/datastore/{datastore_id}/studies/{study}/series/{series}/instances/{sop}{query}"
