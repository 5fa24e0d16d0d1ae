"""Tandem settings, read from environment variables only (12-factor).

Defaults give the embedded shape: SQLite and a filesystem Celery broker under ``var/``, so one
command runs Tandem on a laptop. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL`` and
``SECRET_KEY`` (see docker-compose.yml).
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TANDEM_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def secret_key(debug: bool) -> str:
    """SECRET_KEY from the environment; else the embedded shape's key generated under var/ (made
    on first use with DEBUG on, e.g. by ``make run``); else refuse to start: there is no public
    fallback key."""
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        return key
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    if debug:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.touch(mode=0o600)
        key_file.write_text(key)
        return key
    raise ImproperlyConfigured(
        "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY in the environment (e.g. "
        "SECRET_KEY=$(openssl rand -hex 32)), or run with DEBUG=1 for a local key under var/."
    )


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_key(DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "accounts",
    "annotation",
    "routing",
    "exports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "tandem.middleware.QueryTextMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tandem.middleware.ApplicationErrorMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tandem.urls"
WSGI_APPLICATION = "tandem.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tandem.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while the embedded worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes) on every path that checks a password (/login/, /admin/login/):
# LOGIN_FAILURE_LIMIT failures lock the client address and, separately, the username for
# LOGIN_COOLOFF_MINUTES; a success resets the count. The address is REMOTE_ADDR (behind a proxy,
# every client shares the proxy's: the username lock still holds).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at every start without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Served from the app folders directly when collectstatic has not run (the embedded shape).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Where snapshot files live (exports app): one folder per snapshot, removed with it.
EXPORTS_ROOT = Path(os.environ.get("EXPORTS_ROOT", VAR_DIR / "exports"))
# Training jobs' artifacts (exports/training/): one folder per job (model, metrics, manifest).
TRAINING_ROOT = Path(os.environ.get("TRAINING_ROOT", VAR_DIR / "training"))
# The base model a job uses when none is given: a local folder (nothing is downloaded).
TRAINING_BASE_MODEL = os.environ.get("TRAINING_BASE_MODEL", "")
# A running job whose worker has not beaten for this long is failed ("worker lost").
TRAINING_HEARTBEAT_TIMEOUT = float(os.environ.get("TRAINING_HEARTBEAT_TIMEOUT", "300"))
MEDIA_URL = "media/"
# Bulk imports arrive as uploads; keep big ones on disk rather than in memory. A request body
# that is not a file upload (a JSON body, form fields) is capped at DATA_UPLOAD_MAX_MEMORY_SIZE.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("TANDEM_MAX_BODY_BYTES", 50 * 1024 * 1024))
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "tandem.uploads.SizeLimitUploadHandler",  # stops an upload past TANDEM_MAX_UPLOAD_BYTES
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
TANDEM_MAX_UPLOAD_BYTES = int(os.environ.get("TANDEM_MAX_UPLOAD_BYTES", 1024**3))

# Untrusted input limits (tandem/inputs.py): JSON nesting in API bodies and imported rows, text
# sizes of what an item, a candidate and a label carry, rows in one JSON import request.
TANDEM_MAX_JSON_DEPTH = int(os.environ.get("TANDEM_MAX_JSON_DEPTH", "32"))
TANDEM_MAX_PROMPT_CHARS = int(os.environ.get("TANDEM_MAX_PROMPT_CHARS", "1000000"))
TANDEM_MAX_CANDIDATE_CHARS = int(os.environ.get("TANDEM_MAX_CANDIDATE_CHARS", "1000000"))
TANDEM_MAX_RATIONALE_CHARS = int(os.environ.get("TANDEM_MAX_RATIONALE_CHARS", "20000"))
TANDEM_MAX_METADATA_BYTES = int(os.environ.get("TANDEM_MAX_METADATA_BYTES", "100000"))
TANDEM_IMPORT_MAX_JSON_ROWS = int(os.environ.get("TANDEM_IMPORT_MAX_JSON_ROWS", "10000"))

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# SECURE_COOKIES means "served over HTTPS": also HSTS, the redirect to HTTPS, and trusting the
# proxy's X-Forwarded-Proto (the proxy in front must set it, and strip it from clients).
if SESSION_COOKIE_SECURE:
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /healthz is probed over plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # Being on browsers' preload list is the operator's decision (HSTS_PRELOAD=1), not a default.
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Content-Security-Policy: scripts only from our own static files (no inline script, no eval).
# Inline styles stay allowed: htmx's indicator style and the API docs' pages use them.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "worker-src": [CSP.SELF, "blob:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "tandem.pagination.KeysetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tandem.errors.api_exception_handler",
    "DEFAULT_FILTER_BACKENDS": [],
    "DEFAULT_PARSER_CLASSES": [
        "tandem.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Per-user (anonymous: per-address) request rates over the cache; see TANDEM_API_THROTTLE.
    "DEFAULT_THROTTLE_CLASSES": [
        "tandem.throttling.UserThrottle",
        "tandem.throttling.AnonThrottle",
    ],
    # Proxies in front that append to X-Forwarded-For (0: use REMOTE_ADDR).
    "NUM_PROXIES": int(os.environ.get("TRUSTED_PROXY_COUNT", "0")) or None,
}
# API request rates, read at each request (so tests and operators can change them).
TANDEM_API_THROTTLE = {
    "user": os.environ.get("API_THROTTLE_USER", "3000/min"),
    "anon": os.environ.get("API_THROTTLE_ANON", "120/min"),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem API",
    "DESCRIPTION": "Projects, items, annotations, routing and exports of preference data.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TrainingJobKindEnum": "exports.training.models.TrainingJob.Kind",
        "TrainingJobStatusEnum": "exports.training.models.TrainingJob.Status",
    },
}

# The cache carries short-lived shared state such as import progress: Redis in production and
# tests, a folder under var/ in the embedded shape (shared by the web and worker processes).
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery: the embedded default is a filesystem broker, so no server is needed to try Tandem.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULE = {
    "routing-models-refresh": {"task": "routing.tasks.router_models_refresh", "schedule": 300.0},
    # Training jobs whose worker died (no heartbeat) end failed, "worker lost".
    "training-jobs-fail-stale": {
        "task": "exports.tasks.stale_training_jobs_fail",
        "schedule": 60.0,
    },
}
CELERY_TASK_ROUTES = {
    "routing.tasks.judge_*": {"queue": "judge"},
    "exports.tasks.training_*": {"queue": "gpu"},
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables; kombu's default is ./control in whatever folder the worker started.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

# Uploads bigger than this are imported by a worker (202 + a job to poll) instead of in the request.
TANDEM_IMPORT_INLINE_MAX_BYTES = int(
    os.environ.get("TANDEM_IMPORT_INLINE_MAX_BYTES", 5 * 1024 * 1024)
)
# A queued or running job with no sign of its worker for this long is stuck (retry / cancel).
TANDEM_JOB_STALE_SECONDS = int(os.environ.get("TANDEM_JOB_STALE_SECONDS", "60"))
# Import: rows per bulk write; how many bad rows an import reports before it stops listing.
TANDEM_IMPORT_BATCH_SIZE = int(os.environ.get("TANDEM_IMPORT_BATCH_SIZE", "5000"))
TANDEM_IMPORT_MAX_REPORTED_ERRORS = int(os.environ.get("TANDEM_IMPORT_MAX_REPORTED_ERRORS", "1000"))

# LLM judges: the environment variables a judge may read its key from (comma-separated globs;
# Tandem's own secrets never), and whether a judge may call loopback/private/link-local hosts
# (a local model server). See routing/judges/guards.py.
JUDGE_KEY_ENV_ALLOWED = os.environ.get("JUDGE_KEY_ENV_ALLOWED", "*_API_KEY")
JUDGE_ALLOW_PRIVATE_URLS = env_bool("JUDGE_ALLOW_PRIVATE_URLS", False)
# LLM judges: backoff of retried calls (full jitter, seconds); Retry-After is honoured on top.
TANDEM_JUDGE_BACKOFF_BASE = float(os.environ.get("TANDEM_JUDGE_BACKOFF_BASE", "0.5"))
TANDEM_JUDGE_BACKOFF_MAX = float(os.environ.get("TANDEM_JUDGE_BACKOFF_MAX", "30"))

# Jobs (judge runs, imports, exports, training): a running job whose worker has not beaten its
# heartbeat for this long is taken as abandoned (its worker died) and may be resumed.
TANDEM_JOB_STALE_SECONDS = int(os.environ.get("TANDEM_JOB_STALE_SECONDS", "60"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The LLM SDKs' HTTP clients log every request at INFO: thousands a minute in a judge run.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

# Label quality (annotation/quality.py, QualitySettings): the sample below which a figure is "too
# few", and the thresholds that flag annotators and judges. TANDEM_QUALITY_MIN_ITEMS=50 etc.
TANDEM_QUALITY = {
    name: float(os.environ[f"TANDEM_QUALITY_{name.upper()}"])
    if "flag" in name or name == "confidence"
    else int(os.environ[f"TANDEM_QUALITY_{name.upper()}"])
    for name in (
        "min_items",
        "min_pair_items",
        "max_pairs",
        "confidence",
        "flag_gold_accuracy",
        "flag_peer_agreement",
        "flag_position_bias",
    )
    if f"TANDEM_QUALITY_{name.upper()}" in os.environ
}

# The router's tunables (routing/router/config.py, RouterSettings). From the environment, the
# switch of the embedding feature: with the [embeddings] extra installed, the router embeds every
# item it routes (minutes at 100,000 items on a CPU). TANDEM_ROUTER_EMBEDDINGS=0 turns it off.
TANDEM_ROUTER: dict[str, object] = {}
if "TANDEM_ROUTER_EMBEDDINGS" in os.environ:
    TANDEM_ROUTER["embeddings"] = env_bool("TANDEM_ROUTER_EMBEDDINGS", True)
