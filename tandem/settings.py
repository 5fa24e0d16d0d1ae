"""Tandem settings, read from environment variables only (12-factor).

Defaults give the embedded shape: SQLite and a filesystem Celery broker under ``var/``, so one
command runs Tandem on a laptop. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL`` and
``SECRET_KEY`` (see docker-compose.yml).
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TANDEM_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DEBUG", False)
# The fallback key is only for the embedded, local shape; production must set SECRET_KEY.
SECRET_KEY = os.environ.get("SECRET_KEY", "tandem-insecure-local-only-key-change-me")
if not DEBUG and "SECRET_KEY" not in os.environ and env_bool("TANDEM_REQUIRE_SECRET_KEY", False):
    raise RuntimeError("SECRET_KEY must be set in the environment")
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
    "accounts",
    "annotation",
    "routing",
    "exports",
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
    "django_htmx.middleware.HtmxMiddleware",
    "tandem.middleware.ApplicationErrorMiddleware",
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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

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
# Bulk imports arrive as uploads; keep big ones on disk rather than in memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

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
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
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
# Import: rows per bulk write; how many bad rows an import reports before it stops listing.
TANDEM_IMPORT_BATCH_SIZE = int(os.environ.get("TANDEM_IMPORT_BATCH_SIZE", "5000"))
TANDEM_IMPORT_MAX_REPORTED_ERRORS = int(os.environ.get("TANDEM_IMPORT_MAX_REPORTED_ERRORS", "1000"))

# LLM judges: backoff of retried calls (full jitter, seconds); Retry-After is honoured on top.
TANDEM_JUDGE_BACKOFF_BASE = float(os.environ.get("TANDEM_JUDGE_BACKOFF_BASE", "0.5"))
TANDEM_JUDGE_BACKOFF_MAX = float(os.environ.get("TANDEM_JUDGE_BACKOFF_MAX", "30"))

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
