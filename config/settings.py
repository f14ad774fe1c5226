"""Buzzer settings: one module, every value from the environment (django-environ).

Development defaults work out of the box; production (DEBUG off) refuses to start
without SECRET_KEY.
"""

import hashlib
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config import logging as _logging
from jobs.redis_client import check_sentinel_settings, parse_sentinels

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(env.str("BUZZER_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

# The suite runs with its own Redis database and a stub broker unless told otherwise;
# worker processes that tests start get BUZZER_TESTING=0 and explicit URLs.
TESTING = env.bool("BUZZER_TESTING", default="pytest" in sys.modules)
# The pytest-xdist worker (gw0, gw1…) a test process, or a process a test started, runs
# under: each has its own namespace and collected static files (below).
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-" + "x" * 40
    else:
        raise ImproperlyConfigured("SECRET_KEY is not set: set it in the environment or .env (DEBUG is off).")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG or TESTING else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_dramatiq",
    "drf_spectacular_sidecar",  # Swagger UI's static files for /api/docs/
    "jobs",
    "orders",
    "reports",
    "webhooks",
    "limits",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.BrokerUnavailableMiddleware",
    "config.middleware.ApiNotFoundMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
VAR_DIR = Path(env.str("BUZZER_VAR_DIR", default=str(BASE_DIR / "var")))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so
    # two worker processes queue on the busy timeout instead of failing with "database
    # is locked" when a read transaction tries to upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            # A kept connection (below) keeps its page cache (SQLITE_CACHE_KIB) warm: a
            # search that visits a thousand jobs of a million-row table in random order
            # reads them from it instead of the file. SQLITE_MMAP_SIZE (bytes, off by
            # default) reads the file through a memory map instead of a read() per page,
            # faster still for the console at that size, but every page a process touches
            # then counts in its RSS (a worker's grew 41% over 100,000 jobs).
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                f"PRAGMA mmap_size={env.int('SQLITE_MMAP_SIZE', default=0)}; "
                f"PRAGMA cache_size=-{env.int('SQLITE_CACHE_KIB', default=8 * 1024)};"
            ),
        }
    )
    # Each request or job thread keeps its connection for a minute instead of opening one
    # (and running the pragmas) per request with a cold cache.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # where the SQLite files live
else:
    # The connection budget: every process (a gunicorn worker, a Dramatiq worker process,
    # the scheduler) borrows connections from a pool of its own of at most
    # DATABASE_POOL_MAX_SIZE, whatever its thread count; a thread holds one only while it
    # works (Django returns it at the end of each request and job). A thread that finds
    # the pool empty waits up to DATABASE_POOL_TIMEOUT seconds, then gets an error that
    # counts as the database being unavailable (503 for a request; the job waits and runs
    # again, no retry used). Sizing max_connections: README, "Database connections".
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
    # Checked before use: after a database restart the idle ones are dead, and with the
    # pool Django has it check each connection it borrows (ConnectionPool.check_connection).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Behind PgBouncer in transaction mode a cursor declared outside a transaction (what
    # `.iterator()` does in autocommit) may be fetched from on another server connection,
    # where it does not exist: DATABASE_SERVER_SIDE_CURSORS=false turns them off, as
    # Django's documentation advises for that set-up (results are then read whole).
    if not env.bool("DATABASE_SERVER_SIDE_CURSORS", default=True):
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    if env.bool("DATABASE_POOL", default=not TESTING):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=3.0),
            "max_idle": 300,
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Two test workers collecting into one folder while the other's WhiteNoise lists it lose
# files under each other (collectstatic replaces a changed file by deleting it first).
STATIC_ROOT = VAR_DIR / (f"static-{_XDIST_WORKER}" if _XDIST_WORKER else "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/reports/"

# --- Email ----------------------------------------------------------------------------
if "EMAIL_URL" in env:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Buzzer <orders@buzzer.localhost>")
ADMINS = [("Operator", a) for a in env.list("ADMIN_EMAILS", default=[])]
SERVER_EMAIL = DEFAULT_FROM_EMAIL


# --- Redis and Dramatiq ---------------------------------------------------------------
def _with_query(url: str, **params: object) -> str:
    """Add connection options to a Redis URL unless the URL already sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in params.items():
        query.setdefault(name, str(value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _project_redis_url() -> str:
    """The Redis `make run` started for this checkout (scripts/ensure_redis.py writes its
    URL to var/redis/url), else the usual local one."""
    path = VAR_DIR / "redis" / "url"
    return path.read_text().strip() if path.exists() else "redis://127.0.0.1:6379/0"


REDIS_URL = env.str("REDIS_URL", default="") or _project_redis_url()
if TESTING:
    # The suite's own redis-server on a private port, never a Redis it did not start.
    REDIS_URL = env.str("TEST_REDIS_URL", default="")
    if not REDIS_URL:
        from tests.support import suite_redis

        REDIS_URL = suite_redis.start()

# --- Redis Sentinel (optional) ----------------------------------------------------------
# With REDIS_SENTINELS (host:port,host:port,…) and REDIS_SENTINEL_MASTER (the name the
# sentinels monitor), every Redis client follows the current master (jobs/redis_client.py):
# REDIS_URL then gives only the database number, password and options, not the host.
# REDIS_SENTINEL_PASSWORD is the sentinels' own password; REDIS_PASSWORD the master's
# (and its replicas') when REDIS_URL carries none.
REDIS_SENTINELS = parse_sentinels(env.str("REDIS_SENTINELS", default=""))
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
REDIS_PASSWORD = env.str("REDIS_PASSWORD", default="")
check_sentinel_settings(REDIS_SENTINELS, REDIS_SENTINEL_MASTER)
if TESTING:  # as for REDIS_URL: the suite's own servers (a test that wants sentinels sets them)
    REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_PASSWORD = (), "", ""


def _installation_namespace(database: dict) -> str:
    """A prefix for every Redis key of this installation, derived from the identity of its
    database: two installations (checkouts, staging copies, projects) sharing one Redis
    never consume each other's queues or see each other's numbers; every process of one
    installation (web, workers, scheduler, on any host) uses the same database, hence the
    same prefix."""
    identity = "|".join(str(database.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME"))
    return "buzzer-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


# Under pytest-xdist each worker process (gw0, gw1…) has a namespace of its own, so two
# workers never flush or consume each other's keys even on one Redis (TEST_REDIS_URL).
BUZZER_NAMESPACE = env.str("BUZZER_NAMESPACE", default="") or (
    ("buzzer-test-" + _XDIST_WORKER if _XDIST_WORKER else "buzzer-test")
    if TESTING
    else _installation_namespace(DATABASES["default"])
)

# Connect and read timeouts keep a request from hanging on a dead or stalled Redis.
BROKER_URL = _with_query(
    REDIS_URL,
    socket_connect_timeout=env.float("REDIS_CONNECT_TIMEOUT", default=1.0),
    socket_timeout=env.float("REDIS_SOCKET_TIMEOUT", default=5.0),
)
BUZZER_BROKER = env.str("BUZZER_BROKER", default="stub" if TESTING else "redis")

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.stub.StubBroker" if BUZZER_BROKER == "stub" else "jobs.broker.BuzzerRedisBroker",
    "OPTIONS": {} if BUZZER_BROKER == "stub" else {"url": BROKER_URL, "namespace": BUZZER_NAMESPACE},
    # Always listed in full: django-dramatiq's defaults name a middleware dramatiq 2
    # no longer has, and a broker without this key would run with no retries at all.
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "jobs.middleware.TimeLimit",
        "dramatiq.middleware.ShutdownNotifications",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Pipelines",
        # Dramatiq runs "after" hooks in reverse order: tracking sits before Retries so
        # that it records the outcome after Retries has decided (retry or dead).
        "jobs.middleware.JobTracking",
        "jobs.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "jobs.waits.ReadyTime",
    ],
}
# Off only to measure bare Dramatiq in bench/jobs_throughput.py: Dramatiq's own Redis
# broker and consumer, without Buzzer's middleware.
if not env.bool("BUZZER_JOB_TRACKING", default=True):
    DRAMATIQ_BROKER["MIDDLEWARE"].remove("jobs.middleware.JobTracking")
    DRAMATIQ_BROKER["MIDDLEWARE"].remove("jobs.waits.ReadyTime")
    if BUZZER_BROKER != "stub":
        DRAMATIQ_BROKER["BROKER"] = "dramatiq.brokers.redis.RedisBroker"
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]
# Messages are JSON, never pickle: a message from Redis is data, never code to run
# (django-dramatiq's default, stated here; tests/test_access_control.py holds it).
DRAMATIQ_ENCODER = "dramatiq.encoder.JSONEncoder"

# --- Buzzer ---------------------------------------------------------------------------
# Every queue jobs may be sent to: `default` (standard work), `premium` (premium orders'
# jobs), `reports` (report generation, minutes long) and `webhooks` (outbound webhook
# deliveries: a slow receiver must never hold the threads that run order jobs). The
# dashboard, /metrics and the alerts watch these.
BUZZER_QUEUES = env.list("BUZZER_QUEUES", default=["default", "premium", "reports", "webhooks"])
BUZZER_PREMIUM_QUEUE = env.str("BUZZER_PREMIUM_QUEUE", default="premium")
# What `manage.py runworkers` starts: one supervised `rundramatiq` per group,
# "QUEUES:PROCESSESxTHREADS", QUEUES joined by "+", "*" for every queue no other group
# names. The Redis broker has no priorities: premium and reports get workers of their
# own, so a standard backlog never delays a premium job and long reports never take the
# threads of short jobs. Every queue must belong to exactly one group.
# Webhook deliveries wait on receivers (up to 10 s each): many threads, little CPU; at
# least twice BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY.
BUZZER_WORKER_GROUPS = env.str("BUZZER_WORKER_GROUPS", default="*:2x4,premium:1x2,reports:1x2,webhooks:1x16")

# --- Outbound webhooks (webhooks/) ---------------------------------------------------
# Receivers on loopback or private networks are refused (SSRF) unless this is on: the
# suite and `make run`'s .env turn it on for local receivers, production leaves it off.
BUZZER_WEBHOOKS_ALLOW_PRIVATE = env.bool("BUZZER_WEBHOOKS_ALLOW_PRIVATE", default=TESTING)
BUZZER_WEBHOOKS_REQUIRE_HTTPS = env.bool("BUZZER_WEBHOOKS_REQUIRE_HTTPS", default=not (DEBUG or TESTING))
# The wait after each failed attempt (s/m/h/d), about three days in all, as Stripe does;
# each wait is stretched by up to 10% of jitter, and a longer Retry-After is honoured.
BUZZER_WEBHOOK_RETRY_SCHEDULE = env.list(
    "BUZZER_WEBHOOK_RETRY_SCHEDULE", default=["5s", "5m", "30m", "2h", "5h", "10h", "10h", "10h", "10h", "10h", "10h"]
)
BUZZER_WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("BUZZER_WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3.0)
BUZZER_WEBHOOK_TIMEOUT_SECONDS = env.float("BUZZER_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Deliveries to one endpoint that may be in flight at once (all processes together), and
# to one whose last attempt failed (a hanging one): it holds at most that many threads,
# the other endpoints keep theirs. Give the webhooks workers twice the first in threads.
BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY = env.int("BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY", default=8)
BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY = env.int("BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY", default=2)
# An endpoint whose deliveries have all failed for this long is disabled (admins mailed once).
BUZZER_WEBHOOK_DISABLE_AFTER_DAYS = env.float("BUZZER_WEBHOOK_DISABLE_AFTER_DAYS", default=3.0)
# After a secret rotation the old secret keeps signing (next to the new one) this long.
BUZZER_WEBHOOK_ROTATION_HOURS = env.float("BUZZER_WEBHOOK_ROTATION_HOURS", default=24.0)
# How long a process trusts its cached answer to "does any endpoint want this event?"
# (asked at every publish; an endpoint saved in another process is seen after this).
BUZZER_WEBHOOK_ENDPOINTS_CACHE_SECONDS = env.float("BUZZER_WEBHOOK_ENDPOINTS_CACHE_SECONDS", default=5.0)
# Retry policy for every actor unless it says otherwise: a few quick retries with
# exponential backoff and jitter (Dramatiq's own 20 retries take five weeks to give up).
BUZZER_MAX_RETRIES = env.int("BUZZER_MAX_RETRIES", default=5)
BUZZER_MIN_BACKOFF_MS = env.int("BUZZER_MIN_BACKOFF_MS", default=2_000)
BUZZER_MAX_BACKOFF_MS = env.int("BUZZER_MAX_BACKOFF_MS", default=300_000)
BUZZER_TIME_LIMIT_MS = env.int("BUZZER_TIME_LIMIT_MS", default=120_000)
# Jobs still pending this long after they were written are dispatched by the sweep.
BUZZER_SWEEP_AFTER_SECONDS = env.float("BUZZER_SWEEP_AFTER_SECONDS", default=5.0)
# How long a send to Redis may take before the job is left to the outbox sweep: the
# request that placed an order never waits longer on a stalled Redis.
BUZZER_DISPATCH_TIMEOUT_SECONDS = env.float("BUZZER_DISPATCH_TIMEOUT_SECONDS", default=0.25)
# After a refused send, sends after commit leave jobs to the sweep for this long.
BUZZER_DISPATCH_BACKOFF_SECONDS = env.float("BUZZER_DISPATCH_BACKOFF_SECONDS", default=2.0)
# After a commit, sent jobs are marked enqueued by a thread of each process, in batches,
# rather than by a second write transaction in the request (off: in the request).
BUZZER_MARK_ENQUEUED_IN_BACKGROUND = env.bool("BUZZER_MARK_ENQUEUED_IN_BACKGROUND", default=True)
BUZZER_SWEEP_INTERVAL_SECONDS = env.float("BUZZER_SWEEP_INTERVAL_SECONDS", default=2.0)
# Delayed jobs (`jobs.enqueue(..., delay=...)`) are handed to Redis by the active
# scheduler, which looks for due ones this often; an idle worker polls its queues every
# BUZZER_WORKER_POLL_MS. Together: a delayed job starts well within a second of its time.
BUZZER_DUE_POLL_SECONDS = env.float("BUZZER_DUE_POLL_SECONDS", default=0.25)
BUZZER_WORKER_POLL_MS = env.int("BUZZER_WORKER_POLL_MS", default=250)
# A worker process sends its acknowledgements from a thread of its own, many per round
# trip, instead of one round trip per message in the worker thread (jobs/broker.py).
BUZZER_BATCHED_ACKS = env.bool("BUZZER_BATCHED_ACKS", default=True)
# A worker process claims the jobs of a fetched batch in one round trip as it fetches
# them, instead of each worker thread waiting for its job's claim at its start
# (jobs/claims.py, jobs/broker.py). Off: claims at start, one round trip per few jobs.
BUZZER_CLAIM_AT_FETCH = env.bool("BUZZER_CLAIM_AT_FETCH", default=True)
# Wake-up: every send also pushes a nudge (same round trip) that idle workers wait on
# with a blocking call between polls, so a job sent to an idle worker starts within a
# few milliseconds instead of up to a poll interval later (jobs/broker.py;
# bench/idle_latency.py: p50 3-4 ms against ~60 ms with the 250 ms poll alone), for one
# BLPOP per queue per poll. Off: idle workers only poll, as plain Dramatiq does.
BUZZER_WORKER_WAKEUP = env.bool("BUZZER_WORKER_WAKEUP", default=True)
# How long a worker's claim on a job is remembered in Redis: a duplicate delivery within
# this window is skipped (the effects ledger still guards side effects after it).
BUZZER_CLAIM_TTL_SECONDS = env.int("BUZZER_CLAIM_TTL_SECONDS", default=86_400)
# Each worker process beats every few seconds (also while all its threads are busy); one
# silent for longer than BUZZER_WORKER_DEAD_AFTER_SECONDS is dead: its jobs run again.
BUZZER_HEARTBEAT_SECONDS = env.float("BUZZER_HEARTBEAT_SECONDS", default=5.0)
BUZZER_WORKER_DEAD_AFTER_SECONDS = env.float("BUZZER_WORKER_DEAD_AFTER_SECONDS", default=20.0)
BUZZER_RECOVERY_INTERVAL_SECONDS = env.float("BUZZER_RECOVERY_INTERVAL_SECONDS", default=5.0)
# A job waiting or running for this long whose message Redis no longer has anywhere (lost
# in a Redis crash, or acked by a worker that died before writing its row) is re-sent;
# Redis is searched for such jobs this often, and at once after a worker died.
BUZZER_LOST_AFTER_SECONDS = env.float("BUZZER_LOST_AFTER_SECONDS", default=30.0)
BUZZER_LOST_SCAN_SECONDS = env.float("BUZZER_LOST_SCAN_SECONDS", default=30.0)
# One active scheduler: the lease lasts this long without renewal (a standby takes over
# within it); schedule rows edited in the admin apply within BUZZER_SCHEDULE_SYNC_SECONDS.
BUZZER_SCHEDULER_LEASE_SECONDS = env.float("BUZZER_SCHEDULER_LEASE_SECONDS", default=5.0)
BUZZER_SCHEDULE_SYNC_SECONDS = env.float("BUZZER_SCHEDULE_SYNC_SECONDS", default=2.0)
# A scheduler late by up to this long still writes every fire time it missed; after a
# longer silence a schedule runs its latest missed fire once.
BUZZER_SCHEDULE_LATE_SECONDS = env.float("BUZZER_SCHEDULE_LATE_SECONDS", default=60.0)
# A job whose deliveries killed their worker this many times goes to the DLQ instead.
BUZZER_MAX_WORKER_CRASHES = env.int("BUZZER_MAX_WORKER_CRASHES", default=2)
# A job that could not reach the database (or found its external effect being
# done by another delivery) runs again as the same attempt after a backoff from MIN to
# MAX, using none of its retries, up to BUZZER_WAIT_LIMIT times (about 2 hours).
BUZZER_WAIT_MIN_BACKOFF_MS = env.int("BUZZER_WAIT_MIN_BACKOFF_MS", default=500)
BUZZER_WAIT_MAX_BACKOFF_MS = env.int("BUZZER_WAIT_MAX_BACKOFF_MS", default=10_000)
BUZZER_WAIT_LIMIT = env.int("BUZZER_WAIT_LIMIT", default=1000)
BUZZER_IDEMPOTENCY_TTL_HOURS = env.int("BUZZER_IDEMPOTENCY_TTL_HOURS", default=48)
# Queue health: the scheduler samples every queue this often (charts, alerts, /healthz
# counts it silent after 3 missed samples); a queue whose depth keeps rising for this
# many minutes opens an alert; finished jobs (never dead ones) are deleted after this
# many days; /healthz and /metrics want this bearer token when it is set.
BUZZER_SAMPLE_SECONDS = env.float("BUZZER_SAMPLE_SECONDS", default=5.0)
BUZZER_ALERT_RISING_MINUTES = env.int("BUZZER_ALERT_RISING_MINUTES", default=5)
BUZZER_JOB_RETENTION_DAYS = env.int("BUZZER_JOB_RETENTION_DAYS", default=14)
BUZZER_MONITORING_TOKEN = env.str("BUZZER_MONITORING_TOKEN", default="")

PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="orders.payments.FakeGateway")
PAYMENT_LATENCY_MS = env.int("PAYMENT_LATENCY_MS", default=0)
ORDER_MAX_ITEMS = env.int("ORDER_MAX_ITEMS", default=50)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", default=1000)
LOW_STOCK_THRESHOLD = env.int("LOW_STOCK_THRESHOLD", default=5)
# Demo switch for the operator's guide: make the confirmation email job fail.
DEMO_FAIL_EMAILS = env.bool("DEMO_FAIL_EMAILS", default=False)
# Reports: the longest date range a report may cover; how many reports one user (or API
# key) may have queued or running; how long finished files are kept; rows per database
# chunk (also per CSV write and per progress check); the least time between two
# progress writes; and a pause per chunk that only tests set, to watch a report move.
BUZZER_REPORT_MAX_DAYS = env.int("BUZZER_REPORT_MAX_DAYS", default=366)
BUZZER_REPORTS_PER_USER = env.int("BUZZER_REPORTS_PER_USER", default=3)
BUZZER_REPORT_RETENTION_DAYS = env.int("BUZZER_REPORT_RETENTION_DAYS", default=7)
BUZZER_REPORT_CHUNK_SIZE = env.int("BUZZER_REPORT_CHUNK_SIZE", default=2000)
BUZZER_REPORT_PROGRESS_SECONDS = env.float("BUZZER_REPORT_PROGRESS_SECONDS", default=0.5)
BUZZER_REPORT_CHUNK_DELAY_MS = env.int("BUZZER_REPORT_CHUNK_DELAY_MS", default=0)
# Scheduled reports are emailed: attached up to this size, else as a signed link to
# BUZZER_BASE_URL (the address people reach the site at).
BUZZER_REPORT_ATTACH_MAX_BYTES = env.int("BUZZER_REPORT_ATTACH_MAX_BYTES", default=1_000_000)
# By default the address `make run` serves on: it passes its PORT as BUZZER_PORT (honcho
# sets PORT itself, to a number of its own).
BUZZER_BASE_URL = env.str("BUZZER_BASE_URL", default=f"http://127.0.0.1:{env.int('BUZZER_PORT', default=8000)}")

# --- Rate limits (limits/) -------------------------------------------------------------
# Fixed windows counted in Redis (django-ratelimit on the Django cache "ratelimit", a Redis
# cache on REDIS_URL: the suite's own database in tests). A rate is "<count>/<period>" with
# a period of s, m, h or d, optionally multiplied ("5/15m": 5 per 15 minutes); an empty
# value turns that limit off. Log-ins count failures only (a locked-out username or
# address gets 429 until its window ends, even with the right password); the API counts
# every POST /api/orders/ of a key, the shop every checkout submission of a session and
# of an address. The defaults are far above what a person or an honest client does.
_RATE = re.compile(r"^[0-9]+/[0-9]*[smhd]$")
BUZZER_RATELIMIT_ENABLED = env.bool("BUZZER_RATELIMIT_ENABLED", default=True)
BUZZER_RATELIMITS = {
    "login_username": env.str("BUZZER_RATELIMIT_LOGIN_USERNAME", default="5/15m"),
    "login_ip": env.str("BUZZER_RATELIMIT_LOGIN_IP", default="50/15m"),
    "api_orders": env.str("BUZZER_RATELIMIT_API_ORDERS", default="600/m"),
    "checkout_session": env.str("BUZZER_RATELIMIT_CHECKOUT_SESSION", default="10/m"),
    "checkout_ip": env.str("BUZZER_RATELIMIT_CHECKOUT_IP", default="60/m"),
}
for _scope, _rate in BUZZER_RATELIMITS.items():
    if _rate and not _RATE.match(_rate):
        raise ImproperlyConfigured(f"BUZZER_RATELIMIT_{_scope.upper()}={_rate!r}: write a rate like 5/15m or 600/m.")
# Behind a reverse proxy every request comes from the proxy: name the header in which it
# writes the client's address (e.g. X-Forwarded-For; its last address is used).
BUZZER_RATELIMIT_IP_HEADER = env.str("BUZZER_RATELIMIT_IP_HEADER", default="")
# A request never waits longer than this on Redis for its limits; when Redis does not
# answer, the limits are skipped (fail open, logged) and Redis left alone this long.
BUZZER_RATELIMIT_REDIS_TIMEOUT_SECONDS = env.float("BUZZER_RATELIMIT_REDIS_TIMEOUT_SECONDS", default=0.25)
BUZZER_RATELIMIT_BACKOFF_SECONDS = env.float("BUZZER_RATELIMIT_BACKOFF_SECONDS", default=5.0)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{BUZZER_NAMESPACE}:ratelimit",  # the installation's keys, like every other
        "OPTIONS": {
            "socket_connect_timeout": BUZZER_RATELIMIT_REDIS_TIMEOUT_SECONDS,
            "socket_timeout": BUZZER_RATELIMIT_REDIS_TIMEOUT_SECONDS,
            "pool_class": "jobs.redis_client.CachePool",  # REDIS_URL or Sentinel
        },
    },
}
RATELIMIT_USE_CACHE = "ratelimit"
# A count the cache could not give (a key gone between ADD and INCR) lets the request through.
RATELIMIT_FAIL_OPEN = True
RATELIMIT_IP_META_KEY = "limits.services.client_ip"
# API keys: last_used_at is written at most this often per key (not on every request).
BUZZER_API_KEY_TOUCH_SECONDS = env.int("BUZZER_API_KEY_TOUCH_SECONDS", default=60)
# More series for /metrics from apps the jobs app does not know: Collector classes.
BUZZER_METRICS_COLLECTORS = ["limits.metrics.RateLimitCollector"]

# --- Production hardening -------------------------------------------------------------
if not DEBUG and not TESTING:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Load balancers and Prometheus reach these over plain HTTP on the private network,
    # often straight to gunicorn: answered, not redirected (BUZZER_MONITORING_TOKEN guards them).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# One format for web, workers and scheduler (config/logging.py): JSON lines in
# production, readable lines in development.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = _logging.settings_dict(
    LOG_FORMAT,
    env.str("LOG_LEVEL", default="INFO"),
    {"dramatiq": env.str("DRAMATIQ_LOG_LEVEL", default="WARNING"), "apscheduler": "WARNING"},
)
