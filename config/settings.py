"""Aperture settings, read from the environment.

With nothing configured everything lives under APERTURE_DATA_DIR (default ./var): a SQLite database, a blob
folder, generated secrets, an in-process task worker and an in-memory channel layer. Setting DATABASE_URL,
APERTURE_BLOB_STORE, APERTURE_TASKS=celery and REDIS_URL moves the same code onto real engines.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int, env_list, env_mapping, env_origins, env_pattern, env_str
from config.secret_files import (
    ENCRYPTION_KEY_VARIABLE,
    SECRET_KEY_VARIABLE,
    encryption_key_check,
    persisted_secret,
    required_secrets_check,
)
from imaging.addresses import host_is_loopback

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("APERTURE_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

_database_url = env_str("DATABASE_URL")
# At scale (a shared database) every process must be given the same secrets; the embedded default generates them
# once into its data folder, race-free (config/secret_files.py).
_at_scale = bool(_database_url) and not dj_database_url.parse(_database_url)["ENGINE"].endswith("sqlite3")
if _at_scale:
    required_secrets_check(secret_key=env_str(SECRET_KEY_VARIABLE), encryption_key=env_str(ENCRYPTION_KEY_VARIABLE))
SECRET_KEY = env_str(SECRET_KEY_VARIABLE) or persisted_secret(
    DATA_DIR / "django-secret-key", lambda: secrets.token_urlsafe(50))
# Access-key secrets are encrypted at rest with this Fernet key (never hashed: SigV4 needs the plaintext).
APERTURE_KEY_ENCRYPTION_KEY = encryption_key_check(env_str(ENCRYPTION_KEY_VARIABLE) or persisted_secret(
    DATA_DIR / "key-encryption-key", lambda: Fernet.generate_key().decode()))

DEBUG = env_bool("DJANGO_DEBUG", False)
# Host names this server answers to. Loopback only by default: a deployment names its own (`archive.example.org`).
# The websocket origin check trusts the Host header only for names listed here.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "imaging",
    "viewer",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# API routes are exact: a trailing-slash variant is not a route (SPEC 2.3).
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# Database connections at scale are bounded per process. Under ASGI every request may run in a thread of its own,
# so persistent connections (CONN_MAX_AGE > 0) pile up, one per thread, until PostgreSQL refuses more ("too many
# clients already"; Django's documentation warns of this). Instead each process keeps a pool of at most
# APERTURE_DB_POOL_MAX connections (Django's PostgreSQL pool, psycopg_pool), lent per request and returned after it;
# a request that finds them all busy waits up to APERTURE_DB_POOL_TIMEOUT seconds. APERTURE_DB_POOL_MAX=0 turns the
# pool off (behind pgbouncer in transaction mode, say): each request then opens and closes its own connection.
APERTURE_DB_POOL_MAX = env_int("APERTURE_DB_POOL_MAX", 10, minimum=0)
# Connections are opened on demand and kept while used (idle ones close after 10 minutes down to this many); 0 suits
# Celery's prefork children, whose pool is closed after every task.
APERTURE_DB_POOL_MIN = env_int("APERTURE_DB_POOL_MIN", 0, minimum=0)
APERTURE_DB_POOL_TIMEOUT = env_int("APERTURE_DB_POOL_TIMEOUT", 30, minimum=1)
if APERTURE_DB_POOL_MIN > APERTURE_DB_POOL_MAX:
    raise ImproperlyConfigured(f"APERTURE_DB_POOL_MIN must be at most APERTURE_DB_POOL_MAX ({APERTURE_DB_POOL_MAX}), "
                               f"not {APERTURE_DB_POOL_MIN}")
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and APERTURE_DB_POOL_MAX:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": APERTURE_DB_POOL_MIN,
            "max_size": APERTURE_DB_POOL_MAX,
            "timeout": APERTURE_DB_POOL_TIMEOUT,
        }
        # A pooled connection is checked before it is lent: one broken by a PostgreSQL restart or a network cut is
        # replaced instead of failing the request that drew it (Django passes the pool its check for this).
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "aperture.sqlite3",
            # WAL, IMMEDIATE transactions and a busy timeout keep the background worker and the web
            # process from failing each other with "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not shared memory, so threads of the in-process worker see the test database too.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str(
        "APERTURE_TEST_SQLITE", str(DATA_DIR / "test.sqlite3")
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve static files straight from the source folders too, so a server started without collectstatic works.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("APERTURE_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

# Request bodies are bounded per route before they are read (imaging/body_limits.py): API JSON bodies are tiny,
# forms and login smaller still; only a signed-in staff user's DICOM upload may be large, and it is spooled to disk.
APERTURE_MAX_REQUEST_BYTES = env_int("APERTURE_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024)
APERTURE_MAX_FORM_BYTES = env_int("APERTURE_MAX_FORM_BYTES", 256 * 1024, minimum=1024)
APERTURE_MAX_UPLOAD_BYTES = env_int("APERTURE_MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1024)
# STOW-RS bodies (POST /datastore/{id}/studies[/{study}], SPEC 11.5): streamed to a temporary file while hashed.
APERTURE_MAX_STOW_BYTES = env_int("APERTURE_MAX_STOW_BYTES", 1024**3, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = APERTURE_MAX_REQUEST_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # what one request may hold in memory before spooling to disk

# --- Aperture: identity of this "account" and region ---
APERTURE_REGION = env_pattern("APERTURE_REGION", "us-east-1", r"[a-z]{2}(-[a-z]+)+-\d", "an AWS-style region")
APERTURE_ACCEPTED_REGIONS = env_list("APERTURE_ACCEPTED_REGIONS", [])
APERTURE_ACCOUNT_ID = env_pattern("APERTURE_ACCOUNT_ID", "000000000000", r"\d{12}", "12 digits")
APERTURE_PARTITION = env_pattern("APERTURE_PARTITION", "aws", r"aws[a-z-]*", "an AWS partition name")
APERTURE_SIGV4_MAX_SKEW = env_int("APERTURE_SIGV4_MAX_SKEW", 300, minimum=1)
# The longest a web process keeps an access key, its secret and its user's grants before reading them again
# (imaging/services/accesskeys.py: changes through the application take effect at once everywhere anyway); 0: off.
APERTURE_AUTH_CACHE_SECONDS = env_int("APERTURE_AUTH_CACHE_SECONDS", 30, minimum=0)

# --- Storage and background work ---
APERTURE_BLOB_STORE = env_str("APERTURE_BLOB_STORE", f"file://{DATA_DIR / 'blobs'}")
# Background tasks (imaging/tasks/): the backend is a dotted path, named here by the short APERTURE_TASKS alias.
APERTURE_TASK_BACKEND_ALIASES = {
    "thread": "imaging.tasks.backends.thread.ThreadBackend",
    "celery": "imaging.tasks.backends.celery.CeleryBackend",
    "eager": "imaging.tasks.backends.eager.EagerBackend",
}
_tasks_alias = env_choice("APERTURE_TASKS", "thread", tuple(APERTURE_TASK_BACKEND_ALIASES))
APERTURE_TASK_BACKEND = APERTURE_TASK_BACKEND_ALIASES[_tasks_alias]
APERTURE_TASK_THREADS = env_int("APERTURE_TASK_THREADS", 2, minimum=1)
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# --- Quotas (SPEC 3.5) ---
APERTURE_MAX_ACTIVE_DATASTORES = env_int("APERTURE_MAX_ACTIVE_DATASTORES", 100, minimum=1)
APERTURE_MAX_TAGS_PER_RESOURCE = 50
APERTURE_IDEMPOTENCY_HOURS = env_int("APERTURE_IDEMPOTENCY_HOURS", 24, minimum=1)

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker takes a message only when a child of its pool is free: one it merely held would come back only after
# the visibility timeout if the worker vanished, while a running batch is taken over as soon as its heartbeat is
# stale (imaging/pipeline/batches.py).
CELERY_WORKER_DISABLE_PREFETCH = True
# A task taken by a worker that vanished (SIGKILL, power loss) goes back to the queue after this many seconds
# (kombu's default is an hour). A task still running after it is delivered to a second worker as well: every task
# is safe to run twice, and import batches and jobs are claimed in the database, so the copy waits its turn.
# Workers look for such tasks every 5 s (kombu's default sweep comes only every 10 x 10 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("APERTURE_CELERY_VISIBILITY_TIMEOUT_SECONDS", 60, minimum=10),
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"no_phi": {"()": "imaging.logging.RedactPathsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["no_phi"]}},
    "root": {"handlers": ["console"], "level": env_str("APERTURE_LOG_LEVEL", "INFO")},
    "loggers": {
        # Access lines carry paths with study UIDs and link tokens: those are redacted by the filter.
        "django.channels.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # pynetdicom's INFO lines describe every DIMSE message (UIDs among them); ours say what matters.
        "pynetdicom": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# --- S3-compatible object store for import input/output and the s3:// blob backend ---
APERTURE_S3_ENDPOINT_URL = env_str("APERTURE_S3_ENDPOINT_URL")
APERTURE_S3_ACCESS_KEY_ID = env_str("APERTURE_S3_ACCESS_KEY_ID")
APERTURE_S3_SECRET_ACCESS_KEY = env_str("APERTURE_S3_SECRET_ACCESS_KEY")
# The account that owns each input bucket (`bucket=123456789012,...`); unlisted buckets belong to
# APERTURE_ACCOUNT_ID. An import whose inputOwnerAccountId names another account fails (SPEC 4.1).
APERTURE_S3_BUCKET_OWNERS = env_mapping("APERTURE_S3_BUCKET_OWNERS", r"\d{12}", "12 digits")

# --- Imports (SPEC 3.5, 4) ---
APERTURE_IMPORT_CONCURRENCY = env_int("APERTURE_IMPORT_CONCURRENCY", os.cpu_count() or 2, minimum=0)
APERTURE_IMPORT_MAX_FILES = env_int("APERTURE_IMPORT_MAX_FILES", 5000, minimum=1)
APERTURE_IMPORT_MAX_BYTES = env_int("APERTURE_IMPORT_MAX_BYTES", 10 * 1024**3, minimum=1)
APERTURE_IMPORT_MAX_FILE_BYTES = env_int("APERTURE_IMPORT_MAX_FILE_BYTES", 4 * 1024**3, minimum=1)
# Decompression bombs: how far one file may inflate, and the largest frame (Rows x Columns) an import accepts.
APERTURE_IMPORT_MAX_DECODED_BYTES = env_int("APERTURE_IMPORT_MAX_DECODED_BYTES", 1024**3, minimum=1024)
APERTURE_MAX_FRAME_PIXELS = env_int("APERTURE_MAX_FRAME_PIXELS", 2**28, minimum=1)
# A file still being processed after this long fails alone (a decoder looping on corrupt data must not hold a job).
APERTURE_IMPORT_FILE_TIMEOUT_SECONDS = env_int("APERTURE_IMPORT_FILE_TIMEOUT_SECONDS", 600, minimum=1)
APERTURE_MAX_CONCURRENT_IMPORTS = env_int("APERTURE_MAX_CONCURRENT_IMPORTS", 100, minimum=1)
# Server folders the admin may import from (comma-separated absolute paths).
APERTURE_IMPORT_ROOTS = env_list("APERTURE_IMPORT_ROOTS", [])
# How long an import waits for a primary image set LOCKED by an update or copy before the instances that would
# merge into it fail with ConflictException (SPEC 4.4 rule 7).
APERTURE_IMPORT_MERGE_WAIT_SECONDS = env_int("APERTURE_IMPORT_MERGE_WAIT_SECONDS", 15 * 60, minimum=0)
# A job (or, with Celery, a batch of a job's files) whose worker has not reported for this long is taken to be
# dead and is run again; workers report every few seconds. With Celery the recovery task (every
# APERTURE_RECOVERY_EVERY_SECONDS, run by beat) re-queues it, so a killed worker's job finishes elsewhere.
APERTURE_IMPORT_STALE_SECONDS = env_int("APERTURE_IMPORT_STALE_SECONDS", 20 if _tasks_alias == "celery" else 120,
                                        minimum=5)
APERTURE_RECOVERY_EVERY_SECONDS = env_int("APERTURE_RECOVERY_EVERY_SECONDS", 10, minimum=1)
# With Celery a job is split into tasks of this many files, which any worker takes.
APERTURE_IMPORT_BATCH_FILES = env_int("APERTURE_IMPORT_BATCH_FILES", 8, minimum=1)
# --- DICOM networking (DIMSE; imaging/dimse/) ---
# The listener (`manage.py dicom_listener`; with the embedded default `manage.py serve` runs it too, unless
# APERTURE_DICOM_LISTEN=false or the port is 0). The called AE title picks the data store: each data store's own AE
# title, or APERTURE_DICOM_AET for APERTURE_DICOM_DEFAULT_DATASTORE.
APERTURE_DICOM_LISTEN = env_bool("APERTURE_DICOM_LISTEN", _tasks_alias != "celery")
APERTURE_DICOM_HOST = env_str("APERTURE_DICOM_HOST", "127.0.0.1")
APERTURE_DICOM_PORT = env_int("APERTURE_DICOM_PORT", 11112, minimum=0)
# An AE title (PS3.5 6.2, AE): 1 to 16 printable ASCII characters, no backslash, no leading or trailing space.
AE_TITLE_PATTERN = r"[\x21-\x5b\x5d-\x7e](?:[\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?"
APERTURE_DICOM_AET = env_pattern("APERTURE_DICOM_AET", "APERTURE", AE_TITLE_PATTERN,
                                 "1 to 16 printable characters, no backslash, no leading or trailing space")
APERTURE_DICOM_DEFAULT_DATASTORE = env_str("APERTURE_DICOM_DEFAULT_DATASTORE")
# Any calling AE title from any host may associate (a first try on one machine); otherwise only the known DICOM
# nodes, from their own host. The default is true only when the listener binds a loopback address (nothing off this
# machine can call it) and the tasks are not Celery; set true on another address, the listener warns at start.
APERTURE_DICOM_ALLOW_ANY = env_bool("APERTURE_DICOM_ALLOW_ANY",
                                    _tasks_alias != "celery" and host_is_loopback(APERTURE_DICOM_HOST))
# Instances received over a long association become an import job every this many seconds (or files).
APERTURE_DICOM_BATCH_SECONDS = env_int("APERTURE_DICOM_BATCH_SECONDS", 30, minimum=1)
APERTURE_DICOM_BATCH_FILES = env_int("APERTURE_DICOM_BATCH_FILES", 1000, minimum=1)
APERTURE_DICOM_MAX_ASSOCIATIONS = env_int("APERTURE_DICOM_MAX_ASSOCIATIONS", 16, minimum=1)
# Seconds an association may stay silent (DIMSE and network timeouts), and how long a graceful shutdown waits for
# the associations in flight.
APERTURE_DICOM_TIMEOUT_SECONDS = env_int("APERTURE_DICOM_TIMEOUT_SECONDS", 60, minimum=1)
APERTURE_DICOM_SHUTDOWN_SECONDS = env_int("APERTURE_DICOM_SHUTDOWN_SECONDS", 30, minimum=0)
# DICOM TLS (PS3.15 B.1): a second port speaking TLS when a certificate and key are set; with a CA, clients must
# present a certificate it signed.
APERTURE_DICOM_TLS_CERT = env_str("APERTURE_DICOM_TLS_CERT")
APERTURE_DICOM_TLS_KEY = env_str("APERTURE_DICOM_TLS_KEY")
APERTURE_DICOM_TLS_CA = env_str("APERTURE_DICOM_TLS_CA")
APERTURE_DICOM_TLS_PORT = env_int("APERTURE_DICOM_TLS_PORT", 2762, minimum=0)
# C-FIND answers at most this many matches (QIDO-RS pages hold 1000); a query matching more is refused with 0xA700
# (Out of resources) and asked to narrow, rather than answered with a silent subset (imaging/dimse/find.py).
APERTURE_DICOM_FIND_LIMIT = env_int("APERTURE_DICOM_FIND_LIMIT", 1000, minimum=1)

# Frame and metadata blobs referenced by nothing (left by a crash) are removed once this old, at start-up and
# every APERTURE_ORPHAN_SWEEP_SECONDS (imaging/services/orphans.py).
APERTURE_ORPHAN_GRACE_SECONDS = env_int("APERTURE_ORPHAN_GRACE_SECONDS", 6 * 3600, minimum=0)
APERTURE_ORPHAN_SWEEP_SECONDS = env_int("APERTURE_ORPHAN_SWEEP_SECONDS", 24 * 3600, minimum=60)

# --- Storage tiers (SPEC 9) ---
APERTURE_TIERING_DAYS = env_int("APERTURE_TIERING_DAYS", 30, minimum=1)
APERTURE_TIERING_SWEEP_SECONDS = env_int("APERTURE_TIERING_SWEEP_SECONDS", 24 * 3600, minimum=60)

# --- Viewer ---
APERTURE_RENDER_CACHE_BYTES = env_int("APERTURE_RENDER_CACHE_MB", 256, minimum=16) * 1024 * 1024

# --- DICOMweb bearer tokens (SPEC 12.6; imaging/services/oidc.py, authorizers.py, accesstokens.py) ---
# An OIDC issuer whose JWTs name local users (by APERTURE_OIDC_USER_CLAIM); empty: no OIDC.
APERTURE_OIDC_ISSUER = env_str("APERTURE_OIDC_ISSUER")
APERTURE_OIDC_AUDIENCE = env_str("APERTURE_OIDC_AUDIENCE")
if APERTURE_OIDC_ISSUER and not APERTURE_OIDC_ISSUER.startswith(("https://", "http://")):
    raise ImproperlyConfigured(f"APERTURE_OIDC_ISSUER must be an http(s) URL, not {APERTURE_OIDC_ISSUER!r}")
# Without an audience any token the issuer gives any of its clients would do.
if APERTURE_OIDC_ISSUER and not APERTURE_OIDC_AUDIENCE:
    raise ImproperlyConfigured("APERTURE_OIDC_AUDIENCE must be set when APERTURE_OIDC_ISSUER is")
# The issuer's JWKS from a file instead of its discovery document (an issuer this server cannot reach).
APERTURE_OIDC_JWKS_FILE = env_str("APERTURE_OIDC_JWKS_FILE")
APERTURE_OIDC_USER_CLAIM = env_str("APERTURE_OIDC_USER_CLAIM", "preferred_username")
APERTURE_OIDC_JWKS_TTL_SECONDS = env_int("APERTURE_OIDC_JWKS_TTL_SECONDS", 3600, minimum=1)
APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS = env_int("APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS", 30, minimum=0)
# Data store authorizers: lambdaAuthorizerArn=module:function or =https://… (http:// only to a loopback host).
APERTURE_AUTHORIZERS = env_mapping("APERTURE_AUTHORIZERS", r"(https?://\S+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)",
                                   "module:function or an http(s) URL")

# --- Audit, metrics, embedding, sessions (SPEC 13, issue 6) ---
APERTURE_AUDIT_DATA_EVENTS = env_bool("APERTURE_AUDIT_DATA_EVENTS", True)
APERTURE_TRUSTED_PROXIES = env_list("APERTURE_TRUSTED_PROXIES", [])
APERTURE_METRICS_TOKEN = env_str("APERTURE_METRICS_TOKEN")
# Origins allowed to frame share links (CSP frame-ancestors); every other page sends X-Frame-Options: DENY.
APERTURE_EMBED_ORIGINS = env_list("APERTURE_EMBED_ORIGINS", [])
# Origins whose pages may call the DICOMweb routes from a browser (CORS, imaging/cors.py); empty: no CORS at all.
APERTURE_CORS_ORIGINS = env_origins("APERTURE_CORS_ORIGINS")
# How often an open viewer socket re-checks its session, user, share link and grants (logout and revocation close it
# at once; this catches expiry and removed grants).
APERTURE_WS_RECHECK_SECONDS = env_int("APERTURE_WS_RECHECK_SECONDS", 60, minimum=1)
# How often an open viewer socket is sent a keepalive ping (viewer/consumers.py): well below a proxy's idle read
# timeout (nginx's proxy_read_timeout is 60 s by default). The browser reconnects after three intervals of silence.
APERTURE_WS_PING_SECONDS = env_int("APERTURE_WS_PING_SECONDS", 20, minimum=1)
APERTURE_SHARE_LINK_MAX_DAYS = env_int("APERTURE_SHARE_LINK_MAX_DAYS", 30, minimum=1)
SESSION_COOKIE_AGE = env_int("APERTURE_SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True  # the age above is an idle timeout: every request extends the session
APERTURE_AUDIT_RETENTION_DAYS = env_int("APERTURE_AUDIT_RETENTION_DAYS", 2555, minimum=1)
# Refused API calls without valid credentials: rows written per client address per minute (the rest are counted in
# /metrics only), and in all per minute, so that anonymous traffic cannot grow the audit table without bound.
APERTURE_AUDIT_ANONYMOUS_PER_MINUTE = env_int("APERTURE_AUDIT_ANONYMOUS_PER_MINUTE", 10, minimum=0)
APERTURE_AUDIT_ANONYMOUS_TOTAL_PER_MINUTE = env_int("APERTURE_AUDIT_ANONYMOUS_TOTAL_PER_MINUTE", 600, minimum=0)
# Login throttling by django-axes (imaging/auth.py): per (username, client address), and per client address.
APERTURE_LOGIN_MAX_FAILURES = env_int("APERTURE_LOGIN_MAX_FAILURES", 5, minimum=1)
APERTURE_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("APERTURE_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1)
APERTURE_LOGIN_LOCK_SECONDS = env_int("APERTURE_LOGIN_LOCK_SECONDS", 15 * 60, minimum=1)
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "imaging.auth.ApertureAxesHandler"
AXES_FAILURE_LIMIT = "imaging.auth.failure_limit"  # read from the APERTURE_ settings above at each login
AXES_COOLOFF_TIME = "imaging.auth.cool_off"
AXES_LOCKOUT_PARAMETERS = "imaging.auth.lockout_parameters"
AXES_CLIENT_IP_CALLABLE = "imaging.auth.client_address"
AXES_LOCKOUT_CALLABLE = "imaging.auth.lockout_response"
AXES_RESET_ON_SUCCESS = False  # a success would also clear the address's count: one own account would reset it
# Attempts while locked are refused without being written: hammering a locked form adds no rows.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False
APERTURE_THROTTLING_ENABLED = env_bool("APERTURE_THROTTLING_ENABLED", False)
# Concurrent UpdateImageSetMetadata / CopyImageSet / DeleteImageSet per data store (SPEC 3.5).
APERTURE_MAX_CONCURRENT_WRITES = env_int("APERTURE_MAX_CONCURRENT_WRITES", 100, minimum=1)

# --- Shared state across web processes (imaging/sharedstate, imaging/metrics.py) ---
# Throttle buckets and the anonymous-audit budget: in this process (memory), or in REDIS_URL's Redis (redis), the
# default wherever several processes are expected (APERTURE_TASKS=celery or APERTURE_REDIS_CHANNELS=true).
APERTURE_SHARED_STATE_BACKEND_ALIASES = {
    "memory": "imaging.sharedstate.backends.memory.MemorySharedState",
    "redis": "imaging.sharedstate.backends.redis.RedisSharedState",
}
_shared_state_alias = env_choice(
    "APERTURE_SHARED_STATE",
    "redis" if _tasks_alias == "celery" or env_bool("APERTURE_REDIS_CHANNELS", False) else "memory",
    tuple(APERTURE_SHARED_STATE_BACKEND_ALIASES),
)
APERTURE_SHARED_STATE_BACKEND = APERTURE_SHARED_STATE_BACKEND_ALIASES[_shared_state_alias]
# Prefix of every shared-state key, so that two deployments (or test runs) can share one Redis database.
APERTURE_SHARED_STATE_PREFIX = env_pattern("APERTURE_SHARED_STATE_PREFIX", "aperture", r"[A-Za-z0-9_.:-]{1,64}",
                                           "1 to 64 letters, digits or _.:-")

# The viewer's websockets reach each other across processes through the channel layer (logout and revocation close
# sockets held by any web process). channels-redis waits for messages with a blocking pop of up to 5 s; redis-py 8
# cuts every read off after 5 s by default (socket_timeout), which killed each idle socket with 1011 (channels_redis
# issue 422). Reads wait longer than the pop, and a connection that went quiet is proved alive by a PING first.
APERTURE_REDIS_SOCKET_TIMEOUT = env_int("APERTURE_REDIS_SOCKET_TIMEOUT", 30, minimum=10)
if _tasks_alias == "celery" or env_bool("APERTURE_REDIS_CHANNELS", False):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{
                    "address": REDIS_URL,
                    "socket_timeout": APERTURE_REDIS_SOCKET_TIMEOUT,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                    "health_check_interval": 15,
                }],
                # Channel and group keys carry the deployment's prefix, like the shared state's keys.
                "prefix": f"{APERTURE_SHARED_STATE_PREFIX}:asgi",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# /metrics adds up every web process sharing this folder (prometheus_client's multiprocess mode). It must be in the
# environment before Python starts (prometheus_client reads it once, at import); `manage.py serve` empties it when
# the first web process on it starts, and sets DATA_DIR/metrics itself for `serve --workers N` when it is unset.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
