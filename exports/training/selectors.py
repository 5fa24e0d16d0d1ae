"""Reads for training jobs: what a user may see. Managers of a job's project (and admins) see
it; for anyone else it does not exist (404), as for a missing job."""

from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import User
from annotation.models import Membership
from exports.models import Snapshot
from tandem.errors import NotFound

from .models import TrainingJob


def _managed(user: User, queryset: QuerySet) -> QuerySet:
    if not user.is_authenticated:
        return queryset.none()
    if user.is_admin:
        return queryset
    managed = Membership.objects.filter(
        user=user, role=Membership.Role.MANAGER, project=OuterRef("project_id")
    )
    return queryset.filter(Exists(managed))


def training_job_list_for_user(*, user: User) -> QuerySet[TrainingJob]:
    return _managed(user, TrainingJob.objects.all()).order_by("id")


def training_job_get_for_user(
    *, user: User, job_id: int | str, project_id: int | None = None
) -> TrainingJob:
    jobs = training_job_list_for_user(user=user)
    if project_id is not None:
        jobs = jobs.filter(project_id=project_id)
    try:
        return jobs.get(pk=job_id)
    except (TrainingJob.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such training job.") from None


def snapshot_get_for_manager(*, user: User, snapshot_id: int | str) -> Snapshot:
    """A snapshot of a project the user manages, else NotFound."""
    try:
        return _managed(user, Snapshot.objects.all()).get(pk=snapshot_id)
    except (Snapshot.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such snapshot.") from None
