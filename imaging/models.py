"""Persistent state of the store.

Ids are the wire ids (32 lowercase hex characters) used directly as primary keys, so an id in a URL is a primary
key lookup. Timestamps are timezone-aware; the API turns them into epoch seconds.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F


# PS3.5 6.2 (AE): 1 to 16 printable ASCII characters, no backslash, no leading or trailing space.
ae_title_validator = RegexValidator(rf"\A{settings.AE_TITLE_PATTERN}\Z",
                                    "An AE title is 1 to 16 printable ASCII characters, without backslash or "
                                    "leading or trailing spaces.")


def new_resource_id() -> str:
    return uuid.uuid4().hex


class DatastoreStatus(models.TextChoices):
    CREATING = "CREATING"
    CREATE_FAILED = "CREATE_FAILED"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    DELETED = "DELETED"


class LosslessStorageFormat(models.TextChoices):
    HTJ2K = "HTJ2K"
    JPEG_2000_LOSSLESS = "JPEG_2000_LOSSLESS"


class Datastore(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_resource_id, editable=False)
    name = models.CharField(max_length=256)
    status = models.CharField(max_length=16, choices=DatastoreStatus.choices, default=DatastoreStatus.CREATING)
    lossless_storage_format = models.CharField(
        max_length=24, choices=LosslessStorageFormat.choices, default=LosslessStorageFormat.HTJ2K
    )
    kms_key_arn = models.CharField(max_length=512, blank=True)
    lambda_authorizer_arn = models.CharField(max_length=2048, blank=True)
    # The AE title that DICOM nodes call to store into, query or retrieve from this data store (imaging/dimse/);
    # null for none.
    ae_title = models.CharField(max_length=16, unique=True, null=True, blank=True, validators=[ae_title_validator])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def arn(self) -> str:
        return datastore_arn(self.id)


def datastore_arn(datastore_id: str) -> str:
    return (
        f"arn:{settings.APERTURE_PARTITION}:medical-imaging:{settings.APERTURE_REGION}:"
        f"{settings.APERTURE_ACCOUNT_ID}:datastore/{datastore_id}"
    )


def image_set_arn(datastore_id: str, image_set_id: str) -> str:
    return f"{datastore_arn(datastore_id)}/imageset/{image_set_id}"


class ResourceTag(models.Model):
    """A tag on a data store or an image set, keyed by the resource's ARN."""

    resource_arn = models.CharField(max_length=512)
    key = models.CharField(max_length=128)
    value = models.CharField(max_length=256, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["resource_arn", "key"], name="unique_tag_key_per_resource")]
        ordering = ["key"]


class IdempotencyRecord(models.Model):
    """What a clientToken-carrying call answered, so a retry gets the same answer (SPEC 3.7)."""

    operation = models.CharField(max_length=64)
    client_token = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["operation", "client_token"], name="unique_client_token_per_operation")
        ]


class ManagedPolicy(models.TextChoices):
    FULL_ACCESS = "AWSHealthImagingFullAccess"
    READ_ONLY = "AWSHealthImagingReadOnlyAccess"
    CUSTOM = "Custom"


class AccessKey(models.Model):
    """A SigV4 access key of a user. The secret is kept encrypted (imaging/crypto.py), never in plain text."""

    access_key_id = models.CharField(primary_key=True, max_length=20)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_keys")
    name = models.CharField(max_length=128, blank=True)
    encrypted_secret = models.TextField(editable=False)
    policy = models.CharField(max_length=40, choices=ManagedPolicy.choices, default=ManagedPolicy.FULL_ACCESS)
    policy_document = models.JSONField(null=True, blank=True, help_text="IAM-style policy when policy is Custom")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.access_key_id


class AccessToken(models.Model):
    """A personal access token: a bearer credential for the DICOMweb routes only, never the HealthImaging API.

    The token is `apt_<token_id>_<secret>`, shown once. Only the SHA-256 of the secret is kept: the secret is 256
    random bits, so a plain hash is as strong as a slow one and lets every request check it cheaply. What the
    token may do is bounded by its user's grants (and, when `datastore` is set, by that one data store)."""

    token_id = models.CharField(primary_key=True, max_length=20)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens")
    name = models.CharField(max_length=128, blank=True)
    secret_sha256 = models.CharField(max_length=64, editable=False)
    datastore = models.ForeignKey(Datastore, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                  help_text="Blank: every data store the user may read")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.token_id


class Role(models.Model):
    """A local IAM role, `arn:aws:iam::{account}:role/{name}`: what a data store's bearer-token authorizer (SPEC
    12.6) names in its roleArn. The call is then evaluated against the role's policy alone."""

    name = models.CharField(primary_key=True, max_length=64)
    description = models.CharField(max_length=256, blank=True)
    policy = models.CharField(max_length=40, choices=ManagedPolicy.choices, default=ManagedPolicy.READ_ONLY)
    policy_document = models.JSONField(null=True, blank=True, help_text="IAM-style policy when policy is Custom")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AuthGeneration(models.Model):
    """One row whose `stamp` changes (to a fresh random number) whenever an access key, a user, a grant or a data
    store changes, in whichever process makes the change. Web processes keep keys, secrets and grant answers for a
    short while (imaging/services/accesskeys.py) and read this stamp on every call: a different stamp drops them, so
    a key deactivated from the command line is refused by the next call on every process."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    stamp = models.BigIntegerField(default=0)


class JobStatus(models.TextChoices):
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ImportJob(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_resource_id, editable=False)
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="import_jobs")
    name = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.SUBMITTED)
    data_access_role_arn = models.CharField(max_length=2048)
    input_s3_uri = models.CharField(max_length=1024)
    output_s3_uri = models.CharField(max_length=1024)
    input_owner_account_id = models.CharField(max_length=12, blank=True)
    import_configuration = models.JSONField(null=True, blank=True)
    message = models.CharField(max_length=2048, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Live progress, for the admin's job page.
    scanned_files = models.PositiveIntegerField(default=0)
    imported_files = models.PositiveIntegerField(default=0)
    failed_files = models.PositiveIntegerField(default=0)
    # Local imports (manage.py import_dicom, the admin folder import) read these paths instead of inputS3Uri.
    input_paths = models.JSONField(default=list, blank=True)
    client_token = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Written in the same transaction as the job's image sets: the manifests are rebuilt from it, so a crash
    # between persisting and writing manifests never imports twice.
    outcome = models.JSONField(null=True, blank=True)
    # A job distributed over task workers (imaging/pipeline/batches.py): what its discovery found that the batches
    # do not carry (the failures found while listing, the JSON metadata overrides, the number of batches). Set
    # once, when the batches are created; null for a job run in one process.
    plan = models.JSONField(null=True, blank=True)
    # Who is gathering a distributed job's batches into its outcome (a claim token; "" when nobody is).
    finisher = models.CharField(max_length=32, blank=True)
    # A job made of what a DICOM node sent over C-STORE: its calling AE title and address ("" for other jobs).
    calling_ae_title = models.CharField(max_length=16, blank=True)
    calling_address = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [models.Index(fields=["datastore", "status", "submitted_at"])]

    def __str__(self) -> str:
        return self.name or self.id


class BatchStatus(models.TextChoices):
    PENDING = "PENDING"  # queued for any worker
    RUNNING = "RUNNING"  # a worker has it and beats its heartbeat
    DONE = "DONE"  # every file's result is recorded


class ImportBatch(models.Model):
    """A slice of a distributed import job's files, run as one task by any worker (imaging/pipeline/batches.py).

    Each file's result (a FileResult as JSON, frames already in the blob store) is appended to `results` as it
    completes, so a batch taken over after a crash resumes after its last recorded file. `claim` changes at every
    claim: a write by a worker whose claim was taken over matches no row, so a replayed batch records nothing
    twice."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    # [[uri, display name], ...] in discovery order.
    files = models.JSONField()
    status = models.CharField(max_length=8, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    results = models.JSONField(default=list)
    claim = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # How often the worker running the file at `results`' length was lost: a file that kills its worker twice
    # fails alone.
    crashes = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="unique_batch_per_job")]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]


class ImageSetState(models.TextChoices):
    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    DELETED = "DELETED"


class WorkflowStatus(models.TextChoices):
    CREATED = "CREATED"
    COPIED = "COPIED"
    COPYING = "COPYING"
    COPYING_WITH_READ_ONLY_ACCESS = "COPYING_WITH_READ_ONLY_ACCESS"
    COPY_FAILED = "COPY_FAILED"
    UPDATING = "UPDATING"
    UPDATING_FOR_STUDY_CONSISTENCY = "UPDATING_FOR_STUDY_CONSISTENCY"
    UPDATED = "UPDATED"
    UPDATE_FAILED = "UPDATE_FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    IMPORTING = "IMPORTING"
    IMPORTED = "IMPORTED"
    IMPORT_FAILED = "IMPORT_FAILED"


class StorageTier(models.TextChoices):
    FREQUENT_ACCESS = "FREQUENT_ACCESS"
    ARCHIVE_INSTANT_ACCESS = "ARCHIVE_INSTANT_ACCESS"


class ImageSet(models.Model):
    """One series (or a conflicting part of one) with its current version pointer and search columns.

    The search columns are copies of the latest version's Patient/Study/Series values, kept so SearchImageSets and
    the viewer's study list are index lookups rather than scans of metadata documents.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_resource_id, editable=False)
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="image_sets")
    state = models.CharField(max_length=8, choices=ImageSetState.choices, default=ImageSetState.ACTIVE)
    workflow_status = models.CharField(max_length=40, choices=WorkflowStatus.choices, default=WorkflowStatus.CREATED)
    message = models.CharField(max_length=2048, blank=True)
    is_primary = models.BooleanField(default=True)
    forced = models.BooleanField(default=False)
    # latest_version is the newest version, reserved as soon as a write is accepted; content_version is the newest
    # one whose write completed, which is what metadata and frame reads serve while the set is LOCKED.
    latest_version = models.PositiveIntegerField(default=1)
    content_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    last_accessed_at = models.DateTimeField(null=True, blank=True)
    storage_tier = models.CharField(max_length=24, choices=StorageTier.choices, default=StorageTier.FREQUENT_ACCESS)

    study_instance_uid = models.CharField(max_length=64, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=256, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    study_date_time = models.DateTimeField(null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    dicom_tags = models.JSONField(default=dict, help_text="The DICOMTags summary of the latest version")
    grouping_keys = models.JSONField(default=list, help_text="Normalized Patient/Study/Series grouping key values")
    qido_attributes = models.JSONField(
        default=dict, blank=True,
        help_text="Attributes QIDO-RS answers beyond DICOMTags (ReferringPhysicianName, SeriesDescription, …)")

    class Meta:
        ordering = ["-updated_at"]
        # Sorted listings read these indexes in order (sort column, then id ascending as the tie-break) instead of
        # sorting the whole data store; one index per sort direction because the tie-break stays ascending.
        indexes = [
            models.Index(F("datastore"), F("updated_at").desc(), F("id"), name="imageset_updated_desc"),
            models.Index(F("datastore"), F("updated_at"), F("id"), name="imageset_updated_asc"),
            models.Index(F("datastore"), F("created_at").desc(), F("id"), name="imageset_created_desc"),
            models.Index(F("datastore"), F("created_at"), F("id"), name="imageset_created_asc"),
            models.Index(F("datastore"), F("study_date_time").desc(), F("id"), name="imageset_studytime_desc"),
            models.Index(F("datastore"), F("study_date_time"), F("id"), name="imageset_studytime_asc"),
            models.Index(fields=["datastore", "patient_id"]),
            models.Index(fields=["datastore", "accession_number"]),
            models.Index(fields=["datastore", "study_id"]),
            models.Index(fields=["datastore", "study_instance_uid", "series_instance_uid"]),
            models.Index(fields=["datastore", "series_instance_uid"]),
            models.Index(fields=["datastore", "last_accessed_at"]),
        ]
        constraints = [
            # One primary image set per series: the database, not the code, guarantees it under concurrency.
            models.UniqueConstraint(
                fields=["datastore", "study_instance_uid", "series_instance_uid"],
                condition=models.Q(is_primary=True) & ~models.Q(state="DELETED"),
                name="one_primary_image_set_per_series",
            )
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def arn(self) -> str:
        return image_set_arn(self.datastore_id, self.id)


class ImageSetVersion(models.Model):
    """An immutable snapshot: the metadata document's blob key and the state the set had when it was made."""

    image_set = models.ForeignKey(ImageSet, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=8, choices=ImageSetState.choices, default=ImageSetState.ACTIVE)
    workflow_status = models.CharField(max_length=40, choices=WorkflowStatus.choices, default=WorkflowStatus.CREATED)
    message = models.CharField(max_length=2048, blank=True)
    is_primary = models.BooleanField(default=True)
    forced = models.BooleanField(default=False)
    metadata_key = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["image_set", "version"], name="unique_version_per_image_set")]


class ImageFrame(models.Model):
    """Where a frame id of an image set lives. Copies add rows that point at the same blob."""

    image_set = models.ForeignKey(ImageSet, on_delete=models.CASCADE, related_name="frames")
    frame_id = models.CharField(max_length=32)
    blob_key = models.CharField(max_length=256)
    stored_transfer_syntax = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image_set", "frame_id"], name="unique_frame_per_image_set")]
        indexes = [models.Index(fields=["blob_key"])]


class DicomNode(models.Model):
    """A DICOM application entity Aperture knows: where C-MOVE and "Send to" deliver, and, with
    APERTURE_DICOM_ALLOW_ANY false, who may associate (by calling AE title, from its own host) and what it may do."""

    ae_title = models.CharField(max_length=16, unique=True, validators=[ae_title_validator])
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    description = models.CharField(max_length=256, blank=True)
    may_store = models.BooleanField(default=False)
    may_query = models.BooleanField(default=False)
    may_retrieve = models.BooleanField(default=False)
    # Speak DICOM TLS when Aperture connects to it (C-MOVE destinations, Send to).
    use_tls = models.BooleanField(default=False)
    # With APERTURE_DICOM_ALLOW_ANY false, the data stores whose AE titles it may call; none means every data store.
    # Only for calling: a C-MOVE destination or Send to target receives from any data store.
    datastores = models.ManyToManyField(Datastore, blank=True, related_name="dicom_nodes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM node"

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.host}:{self.port})"


class SendStatus(models.TextChoices):
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class DicomSend(models.Model):
    """A study or series sent to a DICOM node with C-STORE ("Send to"), as a background task with progress."""

    id = models.CharField(primary_key=True, max_length=32, default=new_resource_id, editable=False)
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="dicom_sends")
    node = models.ForeignKey(DicomNode, on_delete=models.SET_NULL, null=True, related_name="sends")
    # The destination as it was when the send was asked for (the node may be edited or removed later).
    destination = models.CharField(max_length=300)
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    status = models.CharField(max_length=16, choices=SendStatus.choices, default=SendStatus.SUBMITTED)
    total_instances = models.PositiveIntegerField(default=0)
    sent_instances = models.PositiveIntegerField(default=0)
    failed_instances = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=2048, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        verbose_name = "DICOM send"

    def __str__(self) -> str:
        return f"{self.id} to {self.destination}"


class DatastoreGrant(models.Model):
    """A user's right to read a data store in the viewer (and, later, its role there)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datastore_grants")
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "datastore"], name="one_grant_per_user_and_datastore")]


class StudyIndex(models.Model):
    """One row per study and data store, kept in step with its primary image sets, for the viewer's study list.

    `name_tokens` holds the uppercase parts of the patient name, space-separated and space-framed, and
    StudyNameToken rows index each part so a prefix search on any part is an index range scan.
    """

    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="studies")
    study_instance_uid = models.CharField(max_length=64)
    patient_name = models.CharField(max_length=256, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_birth_date = models.CharField(max_length=18, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    study_date = models.CharField(max_length=18, blank=True)
    study_time = models.CharField(max_length=28, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    referring_physician_name = models.CharField(max_length=256, blank=True)
    timezone_offset = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    modalities = models.CharField(max_length=128, blank=True, help_text="Space-framed list, e.g. ' CT PT '")
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["datastore", "study_instance_uid"], name="one_study_row")]
        indexes = [
            models.Index(fields=["study_date", "id"]),
            models.Index(fields=["patient_id"]),
            models.Index(fields=["accession_number"]),
            models.Index(fields=["patient_name", "id"]),
            # QIDO-RS /studies lists a data store's studies last update first (SPEC 11.2).
            models.Index(F("datastore"), F("updated_at").desc(), F("id").desc(), name="studyindex_updated_desc"),
            models.Index(F("datastore"), F("patient_id"), F("updated_at").desc(), F("id").desc(),
                         name="studyindex_patient_updated"),
            models.Index(F("datastore"), F("accession_number"), F("updated_at").desc(), F("id").desc(),
                         name="studyindex_accession_updated"),
            models.Index(fields=["datastore", "study_date"], name="studyindex_datastore_date"),
        ]


class StudyNameToken(models.Model):
    study = models.ForeignKey(StudyIndex, on_delete=models.CASCADE, related_name="name_tokens")
    token = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["token"])]


class AppendOnlyError(Exception):
    """Audit events are never changed or removed through the application."""


class AuditEvent(models.Model):
    """One access to the store or to patient data (SPEC 13.1). Append-only: the model refuses updates and
    deletes, and database triggers refuse them too (migrations 0008 and 0009); rows older than the retention are
    removed only by `manage.py audit_prune`.

    The row names its user as text (username, principal_arn); `user` is a reference without a database constraint
    that Django never follows on delete, so deleting a user leaves the trail as it was instead of trying to
    rewrite it (a SET_NULL would be an UPDATE, which the triggers refuse)."""

    event_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_time = models.DateTimeField(auto_now_add=True, db_index=True)
    request_id = models.CharField(max_length=64, blank=True)
    event_source = models.CharField(max_length=64, default="medical-imaging.amazonaws.com")
    event_name = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=32, default="AwsApiCall")
    event_category = models.CharField(max_length=16, default="Management")
    read_only = models.BooleanField(default=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                             db_constraint=False, related_name="+")
    username = models.CharField(max_length=150, blank=True, db_index=True)
    principal_arn = models.CharField(max_length=256, blank=True)
    access_key_id = models.CharField(max_length=20, blank=True)
    # userIdentity.type: IAMUser, AssumedRole, Bearer or Session. Nullable (null reads as IAMUser, the only kind
    # before it existed) so that adding it is a plain ADD COLUMN: a rebuild of the table would drop its triggers.
    identity_type = models.CharField(max_length=16, null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    datastore_id = models.CharField(max_length=32, blank=True, db_index=True)
    image_set_id = models.CharField(max_length=32, blank=True)
    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    study_instance_uid = models.CharField(max_length=64, blank=True, db_index=True)
    request_parameters = models.JSONField(default=dict, blank=True)
    response_elements = models.JSONField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(default=200)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=2048, blank=True)

    class Meta:
        ordering = ["-event_time"]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class ShareLink(models.Model):
    """A signed, expiring, revocable link that opens the viewer on one study or image set without a login."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="share_links")
    study_instance_uid = models.CharField(max_length=64)
    image_set_id = models.CharField(max_length=32, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    bound_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="share_links", help_text="Only this user may open the link")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    hide_browser = models.BooleanField(default=True, help_text="Hide the series strip")
    initial_series = models.CharField(max_length=64, blank=True)
    window_preset = models.CharField(max_length=2, blank=True, help_text="1-6 as in the viewer")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Share link {self.id}"


class FrameScrub(models.Model):
    """One run of `manage.py verify_frames`: how many stored frames it re-read and which no longer match what the
    import recorded (bit rot, a truncated copy, a lost object). Frames are named by image set and frame id only."""

    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    datastore_id = models.CharField(max_length=32, blank=True, db_index=True, help_text="Blank: every data store")
    sample_size = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: every frame")
    frames_checked = models.PositiveIntegerField(default=0)
    frames_without_checksum = models.PositiveIntegerField(
        default=0, help_text="Kept as received (lossy or uncompressed): only presence and size are checked")
    frames_bad = models.PositiveIntegerField(default=0)
    bad_frames = models.JSONField(default=list, blank=True, help_text="The first bad frames found")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Frame scrub {self.pk}"
