"""Hardening settings: the secret key, HTTPS, CSP, login lock-out and API throttles."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
# What the test process sets for itself (the browser tests allow async-unsafe ORM calls), not
# what a deployment would have.
TEST_ONLY_ENV = {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def clean_env(**extra) -> dict:
    return {k: v for k, v in os.environ.items() if k not in TEST_ONLY_ENV} | extra


def run_python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    """Run ``code`` after Django's setup in a fresh process with Tandem's real settings."""
    base = clean_env(DJANGO_SETTINGS_MODULE="tandem.settings", TANDEM_VAR_DIR=str(tmp_path))
    prelude = "import django; django.setup(); from django.conf import settings; "
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production_env(**extra) -> dict:
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_COOKIES": "1",
        "ALLOWED_HOSTS": "tandem.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://tandem.example.com",
        **extra,
    }


class TestSecretKey:
    def test_refuses_to_start_with_debug_off_and_no_key(self, tmp_path):
        done = run_python("print('started')", tmp_path, DEBUG="0")
        assert done.returncode != 0
        assert "ImproperlyConfigured" in done.stderr
        assert "SECRET_KEY is not set and DEBUG is off" in done.stderr
        assert not (tmp_path / "secret_key").exists()

    def test_debug_makes_a_private_key_under_var_and_keeps_it(self, tmp_path):
        first = run_python("print(settings.SECRET_KEY)", tmp_path, DEBUG="1")
        assert first.returncode == 0, first.stderr
        key = first.stdout.strip()
        assert len(key) >= 50 and "insecure" not in key
        assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
        # The same key later, also for commands run without DEBUG (sessions survive restarts).
        again = run_python("print(settings.SECRET_KEY)", tmp_path, DEBUG="0")
        assert again.stdout.strip() == key


class TestDeploy:
    def test_check_deploy_is_clean_in_production_settings(self, tmp_path):
        done = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=clean_env(**production_env(TANDEM_VAR_DIR=str(tmp_path))),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "no issues" in done.stdout

    def test_check_deploy_fails_on_plain_http(self, tmp_path):
        done = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=clean_env(**production_env(SECURE_COOKIES="0", TANDEM_VAR_DIR=str(tmp_path))),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0

    def test_secure_cookies_turn_on_hsts_redirect_and_proxy_header(self, tmp_path):
        code = (
            "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_SSL_REDIRECT, "
            "settings.SECURE_PROXY_SSL_HEADER, settings.SESSION_COOKIE_SECURE)"
        )
        on = run_python(code, tmp_path, **production_env())
        assert on.returncode == 0, on.stderr
        assert on.stdout.split()[0] == "31536000"
        assert "True ('HTTP_X_FORWARDED_PROTO', 'https') True" in on.stdout
        off = run_python(code, tmp_path, **production_env(SECURE_COOKIES="0"))
        assert off.stdout.strip() == "0 False None False"


@pytest.mark.django_db
class TestCsp:
    def test_pages_send_a_csp_without_inline_scripts(self, client, admin_user):
        client.force_login(admin_user)
        for path in ("/", "/login/", "/admin/", "/api/v1/docs/"):
            response = client.get(path)
            assert response.status_code == 200, path
            policy = response["Content-Security-Policy"]
            script_src = re.search(r"script-src ([^;]*)", policy).group(1)
            assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
            assert "'self'" in script_src
            assert "frame-ancestors 'none'" in policy
            # No inline script on the page (JSON data blocks are not executed).
            html = response.content.decode()
            for tag in re.findall(r"<script\b[^>]*>", html):
                assert "src=" in tag or "application/json" in tag, (path, tag)

    def test_templates_have_no_inline_script_or_handlers(self):
        for template in (ROOT / "templates").rglob("*.html"):
            text = template.read_text()
            for tag in re.findall(r"<script\b[^>]*>", text):
                assert "src=" in tag, (template, tag)
            assert not re.search(r"\son[a-z]+\s*=", text), template
            assert "hx-on" not in text and "javascript:" not in text, template


@pytest.mark.django_db
class TestLoginLockout:
    @pytest.fixture(autouse=True)
    def _limit(self, settings):
        settings.AXES_FAILURE_LIMIT = 3

    def login(self, client, path, username, password, ip="10.0.0.1"):
        return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)

    @pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
    def test_the_right_password_fails_after_too_many_wrong_ones(self, client, path):
        user = UserFactory(is_staff=True)
        for _ in range(2):
            assert self.login(client, path, user.username, "wrong").status_code == 200
        assert self.login(client, path, user.username, "wrong").status_code == 429
        locked = self.login(client, path, user.username, "pw")
        assert locked.status_code == 429
        assert b"Too many failed logins" in locked.content
        assert "_auth_user_id" not in client.session

    def test_a_username_is_locked_from_every_address(self, client):
        user = UserFactory()
        for i in range(3):
            self.login(client, "/login/", user.username, "wrong", ip=f"10.0.1.{i}")
        assert self.login(client, "/login/", user.username, "pw", ip="10.0.2.1").status_code == 429

    def test_an_address_is_locked_for_every_username(self, client):
        users = [UserFactory() for _ in range(4)]
        for user in users[:3]:
            self.login(client, "/login/", user.username, "wrong", ip="10.0.3.1")
        assert (
            self.login(client, "/login/", users[3].username, "pw", ip="10.0.3.1").status_code == 429
        )
        # Another address still logs in.
        assert (
            self.login(client, "/login/", users[3].username, "pw", ip="10.0.3.2").status_code == 302
        )

    def test_a_success_resets_the_count(self, client):
        user = UserFactory()
        for _ in range(2):
            self.login(client, "/login/", user.username, "wrong")
        assert self.login(client, "/login/", user.username, "pw").status_code == 302
        client.logout()
        for _ in range(2):
            self.login(client, "/login/", user.username, "wrong")
        assert self.login(client, "/login/", user.username, "pw").status_code == 302


@pytest.mark.django_db
class TestApiThrottle:
    def test_per_user_rate(self, api, settings, project, manager, annotator):
        cache.clear()
        settings.TANDEM_API_THROTTLE = {"user": "3/min", "anon": "2/min"}
        for _ in range(3):
            assert api(manager).get("/api/v1/projects/").status_code == 200
        response = api(manager).get("/api/v1/projects/")
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "throttled"
        assert "Retry-After" in response
        # Another user has their own budget.
        assert api(annotator).get("/api/v1/projects/").status_code == 200

    def test_anonymous_rate_per_address(self, api, settings):
        cache.clear()
        settings.TANDEM_API_THROTTLE = {"user": "3/min", "anon": "2/min"}
        # (A refused anonymous call is refused before it is counted; the schema is public.)
        codes = [api().get("/api/v1/schema/").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
