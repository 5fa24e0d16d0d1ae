"""The manager's project pages: create, settings and label schema, markdown preview, members.
Who may use them, field-level errors, and that the services did the writing."""

import pytest
from django.test import Client

from accounts.models import Role, User
from annotation.models import Membership, Project
from tests.factories import MembershipFactory, UserFactory
from tests.pages import client_for, user_for

pytestmark = pytest.mark.django_db


NEW = {
    "name": "Summaries",
    "slug": "summaries",
    "task_type": "pairwise",
    "guidelines": "Prefer **faithful** summaries.",
    "overlap": "3",
    "lease_seconds": "600",
    "max_open_leases": "2",
    "gold_ratio": "0.1",
    "strength_scale": "slightly better, better, much better",
    "allow_tie": "on",
    "allow_both_bad": "on",
    "rationale": "required",
    "aspects": "faithfulness: A, B, tie\nfluency",
}


@pytest.mark.parametrize(
    ("who", "code"), [("anonymous", 302), ("annotator", 403), ("outsider", 200), ("admin", 200)]
)
def test_who_may_create_projects(request, project, who, code):
    # ``outsider`` is a site manager without projects: managers create projects.
    assert client_for(user_for(request, who)).get("/projects/new/").status_code == code


def test_create_a_project_with_its_schema(outsider):
    response = client_for(outsider).post("/projects/new/", NEW)
    project = Project.objects.get(slug="summaries")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/"
    assert (project.overlap, project.lease_seconds, project.gold_ratio) == (3, 600, 0.1)
    schema = project.schema
    assert schema.strength_scale == ("slightly better", "better", "much better")
    assert schema.allow_both_bad and schema.allow_tie and schema.rationale == "required"
    assert [(a.name, a.choices) for a in schema.aspects] == [
        ("faithfulness", ("A", "B", "tie")),
        ("fluency", ("A", "B", "tie")),
    ]
    assert Membership.objects.get(project=project).user == outsider  # its manager


def test_field_level_errors(outsider, project):
    bad = {
        **NEW,
        "slug": project.slug,  # taken
        "overlap": "0",
        "aspects": "one: only",
        "task_type": "listwise",
        "strength_scale": "x",
    }
    response = client_for(outsider).post("/projects/new/", bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="field-overlap"' in html and "greater than or equal to 1" in html
    assert "needs at least two distinct choices" in html  # the aspects field
    assert not Project.objects.filter(name="Summaries").exists()
    ok_but_taken = {**NEW, "slug": project.slug}
    response = client_for(outsider).post("/projects/new/", ok_but_taken)
    assert response.status_code == 400 and "already exists" in response.content.decode()


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 302), ("annotator", 403), ("outsider", 404), ("manager", 200), ("admin", 200)],
)
def test_who_may_edit_settings_and_members(request, project, who, code):
    client = client_for(user_for(request, who))
    assert client.get(f"/projects/{project.pk}/settings/").status_code == code
    assert client.get(f"/projects/{project.pk}/members/").status_code == code


def test_a_refused_edit_still_shows_the_fixed_fields(manager, project):
    response = client_for(manager).post(
        f"/projects/{project.pk}/settings/", {**NEW, "overlap": "0"}
    )
    assert response.status_code == 400
    assert f'value="{project.slug}"' in response.content.decode()


def test_edit_settings_keeps_slug_and_type(manager, project):
    form = {**NEW, "slug": "hijack", "task_type": "thumbs", "overlap": "2"}
    response = client_for(manager).post(f"/projects/{project.pk}/settings/", form)
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.slug != "hijack" and project.task_type == "pairwise"
    assert project.overlap == 2 and project.schema.rationale == "required"
    page = client_for(manager).get(f"/projects/{project.pk}/settings/").content.decode()
    assert "slightly better, better, much better" in page and "faithfulness: A, B, tie" in page


def test_markdown_preview_is_sanitised(manager):
    response = client_for(manager).post(
        "/markdown-preview/", {"guidelines": "**bold** <script>alert(1)</script>"}
    )
    html = response.content.decode()
    assert "<strong>bold</strong>" in html and "<script>" not in html
    assert Client().post("/markdown-preview/", {"guidelines": "x"}).status_code == 302


def test_members_add_existing_create_change_and_remove(manager, project):
    client = client_for(manager)
    url = f"/projects/{project.pk}/members/"
    bob = UserFactory(username="bob", role=Role.MANAGER)  # a site manager may manage
    assert client.post(url, {"username": "bob", "role": "annotator"}).status_code == 302
    assert Membership.objects.get(project=project, user=bob).role == "annotator"

    missing = client.post(url, {"username": "nobody", "role": "annotator"})
    assert missing.status_code == 400 and "No such user" in missing.content.decode()

    created = client.post(url, {"username": "carol", "role": "manager", "create": "on"})
    assert created.status_code == 200
    carol = User.objects.get(username="carol")
    assert carol.role == Role.MANAGER
    password = created.content.decode().split("<code>")[1].split("</code>")[0]
    assert carol.check_password(password)
    assert Membership.objects.get(project=project, user=carol).role == "manager"

    member_url = f"/projects/{project.pk}/members/{bob.pk}/"
    assert client.post(member_url, {"role": "manager"}).status_code == 302
    assert Membership.objects.get(project=project, user=bob).role == "manager"
    assert client.post(member_url, {"remove": "1"}).status_code == 302
    assert not Membership.objects.filter(project=project, user=bob).exists()
    assert client.post(member_url, {"remove": "1"}).status_code == 404  # no longer a member


def test_member_changes_are_for_managers(annotator, outsider, project):
    url = f"/projects/{project.pk}/members/{annotator.pk}/"
    assert client_for(annotator).post(url, {"remove": "1"}).status_code == 403
    assert client_for(outsider).post(url, {"remove": "1"}).status_code == 404
    assert Membership.objects.filter(project=project, user=annotator).exists()


def test_members_api_can_create_a_user(api, manager, project):
    response = api(manager).post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "dave", "role": "annotator", "create": True},
        format="json",
    )
    assert response.status_code == 201
    assert User.objects.get(username="dave").check_password(response["X-Tandem-Password"])
    again = api(manager).post(
        f"/api/v1/projects/{project.pk}/members/",
        {"username": "dave", "role": "annotator", "create": True},
        format="json",
    )
    assert again.status_code == 409


def test_pages_query_counts(manager, project, django_assert_max_num_queries):
    for _ in range(5):
        MembershipFactory(project=project)
    client = client_for(manager)
    with django_assert_max_num_queries(8):
        client.get(f"/projects/{project.pk}/members/")
    with django_assert_max_num_queries(6):
        client.get(f"/projects/{project.pk}/settings/")
