"""The explicit access object: read once with the project, asked without queries, never cached
on the model instance (so one user's role cannot answer for another's)."""

import pytest

from annotation import policies, selectors
from annotation.models import Membership
from tandem.errors import Forbidden, NotFound


@pytest.mark.django_db
def test_access_is_read_with_the_project(
    project, manager, annotator, outsider, django_assert_num_queries
):
    with django_assert_num_queries(1):
        access = selectors.project_access_get(user=manager, project_id=project.pk)
    with django_assert_num_queries(0):
        assert (access.can_view, access.can_manage, access.can_annotate) == (True, True, True)
    as_annotator = selectors.project_access_get(user=annotator, project_id=project.pk)
    assert as_annotator.role == Membership.Role.ANNOTATOR
    assert not as_annotator.can_manage
    with pytest.raises(Forbidden):
        selectors.project_access_get(user=annotator, project_id=project.pk, manage=True)
    with pytest.raises(NotFound):
        selectors.project_access_get(user=outsider, project_id=project.pk)
    with pytest.raises(NotFound):
        selectors.project_access_get(user=manager, project_id="not-a-number")


@pytest.mark.django_db
def test_one_users_role_never_answers_for_another(project, manager, annotator):
    """The same Project instance asked for two users gives each their own role."""
    access = selectors.project_access_get(user=manager, project_id=project.pk)
    other = policies.project_access(annotator, access.project)
    assert other.role == Membership.Role.ANNOTATOR and not other.can_manage
    assert not hasattr(access.project, "_role_for")


@pytest.mark.django_db
def test_admins_manage_everything_and_archived_projects_take_no_labels(
    project, admin_user, annotator
):
    assert policies.project_access(admin_user, project).can_manage
    project.archived = True
    assert not policies.project_access(annotator, project).can_annotate
    assert policies.project_access(annotator, project).can_view
