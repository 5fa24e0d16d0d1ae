"""Reads for judges and runs: what a user may see (missing and forbidden both answer 404)."""

from decimal import Decimal

from django.db.models import Exists, OuterRef, QuerySet, Sum

from accounts.models import User
from annotation.models import Membership, Project
from routing.judges.models import Judge, JudgeRun
from tandem.errors import NotFound


def judge_list() -> QuerySet[Judge]:
    return Judge.objects.order_by("id")


def judge_get(*, name_or_id: str | int) -> Judge:
    judges = Judge.objects.all()
    lookup = {"pk": int(name_or_id)} if str(name_or_id).isdigit() else {"name": name_or_id}
    try:
        return judges.get(**lookup)
    except Judge.DoesNotExist:
        raise NotFound("No such judge.") from None


def judge_run_list_for_user(*, user: User) -> QuerySet[JudgeRun]:
    """Runs of the projects the user manages (admins: every run)."""
    runs = JudgeRun.objects.select_related("judge", "project")
    if user.is_admin:
        return runs
    if not user.is_manager:  # the site role caps the project role
        return runs.none()
    managed = Membership.objects.filter(
        user=user, role=Membership.Role.MANAGER, project=OuterRef("project_id")
    )
    return runs.filter(Exists(managed))


def judge_run_get_for_user(*, user: User, run_id: int | str, project: Project | None = None):
    runs = judge_run_list_for_user(user=user)
    if project is not None:
        runs = runs.filter(project=project)
    try:
        return runs.get(pk=run_id)
    except (JudgeRun.DoesNotExist, ValueError):
        raise NotFound("No such judge run.") from None


def project_judge_cost(*, project: Project) -> dict[str, Decimal | int]:
    """Tokens and cost of every judge run of a project."""
    totals = JudgeRun.objects.filter(project=project).aggregate(
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost")
    )
    return {
        "tokens_in": totals["tokens_in"] or 0,
        "tokens_out": totals["tokens_out"] or 0,
        "cost": totals["cost"] or Decimal(0),
    }
