"""Judge secrets stay home: the key variable comes from the operator's allow-list, never one of
Tandem's own secrets; base_url is plain http(s) to a public host unless the operator allows
private ones; unknown judge fields are refused."""

import socket

import pytest

from routing.judges import guards, services
from routing.judges.models import Judge
from routing.judges.providers import JudgeConfigError, client_for_judge, judge_api_key
from tandem.errors import InvalidInput
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict(settings):
    settings.JUDGE_ALLOW_PRIVATE_URLS = False
    settings.JUDGE_KEY_ENV_ALLOWED = "*_API_KEY"


def fake_dns(table):
    def resolve(host, port, proto=0):
        if host not in table:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, proto, "", (table[host], port))]

    return resolve


class TestKeyEnv:
    def test_the_allow_list(self, strict, settings):
        assert guards.key_env_problem("OPENAI_API_KEY") is None
        assert "not allowed" in guards.key_env_problem("HOME")
        settings.JUDGE_KEY_ENV_ALLOWED = "LLM_*, *_TOKEN"
        assert guards.key_env_problem("LLM_KEY") is None
        assert guards.key_env_problem("HF_TOKEN") is None
        assert guards.key_env_problem("OPENAI_API_KEY") is not None

    @pytest.mark.parametrize(
        "name", ["SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "secret_key"]
    )
    def test_tandems_own_secrets_never(self, strict, settings, name):
        settings.JUDGE_KEY_ENV_ALLOWED = "*"
        assert "Tandem's own secrets" in guards.key_env_problem(name)


class TestBaseUrl:
    @pytest.mark.parametrize(
        "url, why",
        [
            ("ftp://example.com/v1", "http(s)"),
            ("http://user:pw@api.example.com/v1", "credentials"),
            ("https://token@api.example.com/v1", "credentials"),
            ("http://127.0.0.1:8000/v1", "internal"),
            ("http://localhost:8000/v1", "internal"),
            ("http://10.1.2.3/v1", "internal"),
            ("http://169.254.169.254/latest", "internal"),
            ("http://[::1]:8000/v1", "internal"),
            ("http://internal.example.com/v1", "internal"),
            ("http://nowhere.invalid/v1", "does not resolve"),
        ],
    )
    def test_refused(self, strict, url, why):
        dns = fake_dns(
            {
                "127.0.0.1": "127.0.0.1",
                "localhost": "127.0.0.1",
                "10.1.2.3": "10.1.2.3",
                "169.254.169.254": "169.254.169.254",
                "::1": "::1",
                "internal.example.com": "192.168.1.5",
            }
        )
        assert why in guards.base_url_problem(url, resolve=dns)

    def test_public_hosts_pass_and_private_ones_when_allowed(self, strict, settings):
        dns = fake_dns({"api.example.com": "93.184.216.34", "gpu-box": "10.0.0.7"})
        assert guards.base_url_problem("https://api.example.com/v1", resolve=dns) is None
        assert guards.base_url_problem("http://gpu-box:8000/v1", resolve=dns) is not None
        settings.JUDGE_ALLOW_PRIVATE_URLS = True
        assert guards.base_url_problem("http://gpu-box:8000/v1", resolve=dns) is None
        # Credentials stay refused even then: managers can read a judge's base_url.
        assert "credentials" in guards.base_url_problem("http://u:p@gpu-box/v1", resolve=dns)


class TestEveryPath:
    def test_the_service_refuses(self, strict):
        with pytest.raises(Exception, match="Tandem's own secrets"):
            services.judge_create(name="j", provider="openai", model="m", api_key_env="SECRET_KEY")
        with pytest.raises(Exception, match="internal"):
            services.judge_create(
                name="j",
                provider="openai_compatible",
                model="m",
                base_url="http://127.0.0.1:9/v1",
                api_key_env="",
            )
        assert not Judge.objects.exists()

    def test_the_api_refuses_bad_config_and_unknown_fields(self, strict, api, admin_user):
        client = api(admin_user)
        base = {"name": "j", "provider": "openai", "model": "m"}
        for bad in (
            {"api_key_env": "DATABASE_URL"},
            {"api_key_env": "HOME"},
            {"base_url": "http://user:pw@api.example.com/v1"},
            {"base_url": "http://169.254.169.254/"},
            {"api_key": "sk-123"},  # an unknown field: refused, not dropped
        ):
            response = client.post("/api/v1/judges/", {**base, **bad}, format="json")
            assert response.status_code == 400, (bad, response.content)
            assert response.json()["error"]["code"] == "invalid"
        judge = services.judge_create(**base, api_key_env="OPENAI_API_KEY")
        response = client.patch(f"/api/v1/judges/{judge.pk}/", {"modle": "x"}, format="json")
        assert response.status_code == 400 and "modle" in str(response.json())

    def test_a_judge_saved_before_the_limits_does_not_run(self, strict, monkeypatch, manager):
        monkeypatch.setenv("SECRET_KEY", "the-real-secret")
        judge = Judge.objects.create(
            name="old", provider="openai_compatible", model="m", base_url="http://127.0.0.1:9/v1"
        )
        judge.api_key_env = "SECRET_KEY"
        judge.save()
        project = ProjectFactory()
        with pytest.raises(InvalidInput, match="api_key_env"):
            services.judge_run_create(project=project, judge=judge, enqueue=False)
        with pytest.raises(JudgeConfigError, match="own secrets"):
            judge_api_key(judge)
        judge.api_key_env = ""
        with pytest.raises(JudgeConfigError, match="internal"):
            client_for_judge(judge)

    def test_judge_check_turns_only_template_errors_into_input_errors(self, monkeypatch):
        judge = Judge(name="t", provider="openai", model="m", templates={"pairwise": {"user": 1}})
        with pytest.raises(InvalidInput, match="must be text"):
            services.judge_check(judge)

        def bug(template):
            raise KeyError("a bug")

        monkeypatch.setattr(services, "template_validate", bug)
        judge.templates = {"pairwise": {"user": "x"}}
        with pytest.raises(KeyError):
            services.judge_check(judge)


def test_credentials_of_an_old_judge_are_not_shown(api, manager, project):
    judge = Judge.objects.create(
        name="old", provider="openai", model="m", base_url="https://u:secret@api.example.com/v1"
    )
    from routing.judges.models import JudgeRun

    JudgeRun.objects.create(
        project=project, judge=judge, judge_config={"base_url": judge.base_url, "name": "old"}
    )
    body = str(api(manager).get("/api/v1/judges/").json())
    body += str(api(manager).get("/api/v1/judge-runs/").json())
    assert "secret" not in body and "https://***@api.example.com/v1" in body
