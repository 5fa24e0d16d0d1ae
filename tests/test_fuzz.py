"""Schemathesis over /api/v1/schema/ for each role: no 500, and every documented answer matches
the schema. Bounded (FUZZ_EXAMPLES per operation and role, default 4) so that it runs in
``make test``; docs/security.md shows the longer run for nightly CI."""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.models import Role
from accounts.services import user_token
from annotation.assignment import assignment_next
from annotation.models import ImportJob, Membership
from routing.judges.models import Judge, JudgeRun
from tests.factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
ROLES = ("admin", "manager", "annotator", "anonymous")


def _load_schema():
    from drf_spectacular.generators import SchemaGenerator

    from tandem.wsgi import application

    document = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(document)
    schema.app = application
    return schema


SCHEMA = _load_schema()
# Deletions last, so the objects they remove are there for the other operations first.
OPERATIONS = sorted(
    (result.ok() for result in SCHEMA.get_all_operations()),
    key=lambda op: (op.method.upper() == "DELETE", op.path, op.method),
)


@pytest.fixture
def wsgi_in_test_transaction():
    """As Django's test client does: requests must not close the test's database connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, settings, wsgi_in_test_transaction):
    """Real objects for the path parameters, so the fuzzer reaches past the 404s."""
    settings.TANDEM_API_THROTTLE = {"user": "1000000/min", "anon": "1000000/min"}
    project = ProjectFactory()
    users = {
        "admin": UserFactory(role=Role.ADMIN, is_staff=True, is_superuser=True),
        "manager": UserFactory(role=Role.MANAGER),
        "annotator": UserFactory(role=Role.ANNOTATOR),
    }
    MembershipFactory(project=project, user=users["manager"], role=Membership.Role.MANAGER)
    MembershipFactory(project=project, user=users["annotator"])
    item = ItemFactory(project=project)
    ItemFactory(project=project)
    lease = assignment_next(project=project, user=users["annotator"])
    annotation = AnnotationFactory(item=item)
    judge = Judge.objects.create(name="fuzz-judge", provider="openai", model="m")
    run = JudgeRun.objects.create(project=project, judge=judge)
    job = ImportJob.objects.create(project=project, source_name="x.jsonl", path="", format="jsonl")
    ids = {
        "project_id": project.pk,
        "item_id": item.pk,
        "assignment_id": lease.pk,
        "user_id": users["annotator"].pk,
    }
    by_prefix = {
        "/api/v1/projects/": project.pk,
        "/api/v1/annotations/": annotation.pk,
        "/api/v1/judges/": judge.pk,
        "/api/v1/judge-runs/": run.pk,
        "/api/v1/import-jobs/": job.pk,
    }
    return users, ids, by_prefix


def real_parameters(operation, ids, by_prefix) -> dict:
    names = [p.name for p in operation.path_parameters]
    real = {name: ids[name] for name in names if name in ids}
    if "id" in names:
        # An endpoint whose object the world does not make is fuzzed on a missing one (404).
        real["id"] = next(
            (v for k, v in by_prefix.items() if operation.path.startswith(k)), 999_999_999
        )
    return real


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_api_fuzz(world, role, operation):
    users, ids, by_prefix = world
    headers = {}
    if role != "anonymous":
        headers["Authorization"] = f"Token {user_token(user=users[role])}"
    real = real_parameters(operation, ids, by_prefix)
    strategy = operation.as_strategy()
    if real:
        strategy = st.one_of(strategy, operation.as_strategy(path_parameters=real))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case):
        response = case.call(headers=headers)
        case.validate_response(
            response, checks=[not_a_server_error, response_schema_conformance], headers=headers
        )
        if role == "anonymous" and operation.path != "/api/v1/schema/":
            # Refused, or (a path no route matches, e.g. a negative id) not found.
            assert response.status_code in (401, 404), (response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["code"], response.text[:300]  # the one error shape

    fuzz()
