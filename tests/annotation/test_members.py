"""Project roles: the site role caps them, a project keeps a manager, every change is recorded."""

import pytest

from accounts.models import Role
from annotation import services
from annotation.models import Membership, MembershipChange
from tandem.errors import InvalidInput
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def members_url(project, *rest) -> str:
    return "/api/v1/projects/" + "/".join(str(p) for p in (project.id, "members", *rest)) + "/"


class TestService:
    def test_a_site_annotator_is_never_a_project_manager(self, project, manager):
        annotator = UserFactory(role=Role.ANNOTATOR)
        with pytest.raises(InvalidInput, match="site annotator") as caught:
            services.membership_set(project=project, user=annotator, role="manager")
        assert caught.value.code == "role_cap"
        assert not Membership.objects.filter(user=annotator).exists()
        services.membership_set(project=project, user=annotator, role="annotator")
        with pytest.raises(InvalidInput, match="site annotator"):
            services.membership_set(project=project, user=annotator, role="manager")
        assert Membership.objects.get(user=annotator).role == "annotator"

    def test_site_managers_and_admins_may_manage(self, project, manager):
        for role in (Role.MANAGER, Role.ADMIN):
            user = UserFactory(role=role)
            services.membership_set(project=project, user=user, role="manager")
            assert Membership.objects.get(user=user).role == "manager"

    def test_the_last_manager_stays(self, project, manager, annotator):
        with pytest.raises(InvalidInput, match="last manager") as caught:
            services.membership_remove(project=project, user=manager)
        assert caught.value.code == "last_manager"
        with pytest.raises(InvalidInput, match="last manager"):
            services.membership_set(project=project, user=manager, role="annotator")
        assert Membership.objects.get(user=manager).role == "manager"
        other = UserFactory(role=Role.MANAGER)
        services.membership_set(project=project, user=other, role="manager")
        services.membership_set(project=project, user=manager, role="annotator")
        services.membership_remove(project=project, user=manager)
        assert list(Membership.objects.filter(role="manager").values_list("user", flat=True)) == [
            other.pk
        ]

    def test_a_capped_manager_does_not_count_as_the_other_manager(self, project, manager):
        demoted = UserFactory(role=Role.ANNOTATOR)
        MembershipFactory(project=project, user=demoted, role=Membership.Role.MANAGER)
        with pytest.raises(InvalidInput, match="last manager"):
            services.membership_remove(project=project, user=manager)

    def test_changes_are_recorded(self, project, manager):
        user = UserFactory(role=Role.MANAGER)
        services.membership_set(project=project, user=user, role="annotator", changed_by=manager)
        services.membership_set(project=project, user=user, role="annotator", changed_by=manager)
        services.membership_set(project=project, user=user, role="manager", changed_by=manager)
        services.membership_remove(project=project, user=user, changed_by=manager)
        services.membership_remove(project=project, user=user, changed_by=manager)  # a no-op
        rows = list(
            MembershipChange.objects.filter(user=user).values_list(
                "old_role", "new_role", "changed_by"
            )
        )
        assert rows == [
            ("", "annotator", manager.pk),
            ("annotator", "manager", manager.pk),
            ("manager", "", manager.pk),
        ]

    def test_a_legacy_manager_membership_of_a_site_annotator_grants_nothing(
        self, api, project, manager
    ):
        """Written before the cap (or the site role lowered later): read as annotator."""
        demoted = UserFactory(role=Role.ANNOTATOR)
        MembershipFactory(project=project, user=demoted, role=Membership.Role.MANAGER)
        assert api(demoted).get(members_url(project)).status_code == 200
        response = api(demoted).post(
            members_url(project), {"username": manager.username, "role": "annotator"}
        )
        assert response.status_code == 403
        assert api(demoted).get("/api/v1/import-jobs/").json()["results"] == []


class TestApi:
    def test_a_manager_cannot_make_a_site_annotator_a_manager(self, api, project, manager):
        annotator = UserFactory(role=Role.ANNOTATOR)
        response = api(manager).post(
            members_url(project), {"username": annotator.username, "role": "manager"}
        )
        assert response.status_code == 400
        body = response.json()["error"]
        assert body["code"] == "role_cap" and "site annotator" in body["message"]
        assert not Membership.objects.filter(user=annotator).exists()

    def test_the_last_manager_cannot_be_removed_or_demoted(self, api, project, manager):
        response = api(manager).delete(members_url(project, manager.id))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "last_manager"
        response = api(manager).post(
            members_url(project), {"username": manager.username, "role": "annotator"}
        )
        assert response.status_code == 400
        assert Membership.objects.get(user=manager).role == "manager"

    def test_history_for_managers_only(
        self, api, project, manager, annotator, outsider, django_assert_max_num_queries
    ):
        for _ in range(5):
            user = UserFactory(role=Role.MANAGER)
            api(manager).post(members_url(project), {"username": user.username, "role": "manager"})
            api(manager).delete(members_url(project, user.id))
        with django_assert_max_num_queries(6):
            response = api(manager).get(members_url(project, "history"))
        assert response.status_code == 200
        rows = response.json()["results"]
        assert len(rows) == 10
        assert rows[0]["changed_by"] == manager.username
        assert (rows[0]["old_role"], rows[0]["new_role"]) == ("", "manager")
        assert (rows[1]["old_role"], rows[1]["new_role"]) == ("manager", "")
        assert api(annotator).get(members_url(project, "history")).status_code == 403
        assert api(outsider).get(members_url(project, "history")).status_code == 404
        assert api().get(members_url(project, "history")).status_code in (401, 403)


class TestAdmin:
    def _post(self, client, project, rows):
        data = {
            "name": project.name,
            "slug": project.slug,
            "description": "",
            "task_type": project.task_type,
            "guidelines": "",
            "label_schema": "{}",
            "overlap": 1,
            "lease_seconds": 900,
            "max_open_leases": 1,
            "gold_ratio": 0,
            "memberships-TOTAL_FORMS": len(rows),
            "memberships-INITIAL_FORMS": sum(1 for r in rows if r.get("id")),
            "memberships-MIN_NUM_FORMS": 0,
            "memberships-MAX_NUM_FORMS": 1000,
        }
        for i, row in enumerate(rows):
            for key, value in row.items():
                data[f"memberships-{i}-{key}"] = value
            data[f"memberships-{i}-project"] = project.pk
        return client.post(f"/admin/annotation/project/{project.pk}/change/", data)

    def test_admin_obeys_the_cap_and_the_last_manager_and_records(
        self, client, admin_user, project, manager
    ):
        client.force_login(admin_user)
        mine = Membership.objects.get(user=manager)
        annotator = UserFactory(role=Role.ANNOTATOR)
        response = self._post(
            client,
            project,
            [
                {"id": mine.pk, "user": manager.pk, "role": "manager"},
                {"user": annotator.pk, "role": "manager"},
            ],
        )
        assert response.status_code == 200 and b"site annotator" in response.content
        assert not Membership.objects.filter(user=annotator).exists()

        response = self._post(
            client, project, [{"id": mine.pk, "user": manager.pk, "role": "annotator"}]
        )
        assert response.status_code == 200 and b"at least one manager" in response.content
        assert Membership.objects.get(user=manager).role == "manager"

        other = UserFactory(role=Role.MANAGER)
        response = self._post(
            client,
            project,
            [
                {"id": mine.pk, "user": manager.pk, "role": "manager", "DELETE": "on"},
                {"user": other.pk, "role": "manager"},
            ],
        )
        assert response.status_code == 302
        assert list(Membership.objects.values_list("user", "role")) == [(other.pk, "manager")]
        changes = list(
            MembershipChange.objects.values_list("user", "old_role", "new_role", "changed_by")
        )
        assert changes == [
            (other.pk, "", "manager", admin_user.pk),
            (manager.pk, "manager", "", admin_user.pk),
        ]
        assert client.get("/admin/annotation/membershipchange/").status_code == 200
