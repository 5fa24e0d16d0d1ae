"""Writes for judges and judge runs: create/update a judge, create/cancel/resume a run."""

import random
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from accounts.models import User
from annotation.models import Annotation, Item, Project
from annotation.routes import JUDGE_TARGETS
from routing.judges import guards
from routing.judges.lifecycle import judge_run_transition
from routing.judges.models import Judge, JudgeRun
from routing.judges.prompts import template_validate
from routing.judges.runner import judge_run_is_executing
from tandem.errors import Conflict, InvalidInput

JUDGE_FIELDS = (
    "name",
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "templates",
    "sampling",
    "output_mode",
    "logprobs",
    "price_input_per_mtok",
    "price_output_per_mtok",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_seconds",
    "max_attempts",
    "active",
)


def judge_check(judge: Judge) -> None:
    judge.full_clean()
    for template in (judge.templates or {}).values():
        try:
            template_validate(template)
        except ValidationError as exc:
            raise InvalidInput(exc.messages[0]) from None


@transaction.atomic
def judge_create(**fields: Any) -> Judge:
    unknown = set(fields) - set(JUDGE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown judge fields: {', '.join(sorted(unknown))}")
    if Judge.objects.filter(name=fields.get("name")).exists():
        raise Conflict(f"a judge named {fields.get('name')!r} exists")
    judge = Judge(**fields)
    judge_check(judge)
    judge.save()
    return judge


@transaction.atomic
def judge_update(*, judge: Judge, **changes: Any) -> Judge:
    for name, value in changes.items():
        if name not in JUDGE_FIELDS:
            raise InvalidInput(f"unknown judge field {name!r}")
        setattr(judge, name, value)
    judge_check(judge)
    judge.save()
    return judge


@transaction.atomic
def judge_delete(*, judge: Judge) -> None:
    """Delete a judge that has never run; one with runs is deactivated instead (audit trail)."""
    if judge.runs.exists():
        raise Conflict("this judge has runs; set it inactive instead of deleting it")
    judge.delete()


def judge_config_snapshot(judge: Judge) -> dict[str, Any]:
    """What a run records about its judge (no key, only the variable's name)."""
    return {
        "name": judge.name,
        "provider": judge.provider,
        "model": judge.model,
        "base_url": judge.base_url,
        "api_key_env": judge.key_env,
        "templates": judge.templates,
        "sampling": judge.sampling,
        "output_mode": judge.output_mode,
        "price_input_per_mtok": str(judge.price_input_per_mtok),
        "price_output_per_mtok": str(judge.price_output_per_mtok),
    }


def _enqueue(run: JudgeRun) -> None:
    from routing.tasks import judge_run_execute

    transaction.on_commit(lambda: judge_run_execute.delay(run.pk))


def check_scope_has_items(*, project: Project, scope: str) -> None:
    """A run with nothing to judge is refused with the reason, not recorded as "completed"."""
    items = Item.objects.filter(project=project)
    if scope == JudgeRun.Scope.ALL:
        if not items.exists():
            raise InvalidInput(f"project {project.slug!r} has no items yet; import some first")
        return
    if items.filter(route__in=[Item.Route.JUDGE, Item.Route.BOTH]).exists():
        return
    n_items = items.count()
    if not n_items:
        raise InvalidInput(f"project {project.slug!r} has no items yet; import some first")
    raise InvalidInput(
        f"no item of project {project.slug!r} is routed to judges (its {n_items} items are "
        "routed to people or not routed yet): set a routing policy and route the items, or "
        "run the judge on every item (run_judge --all, scope 'all')",
        code="nothing_routed",
    )


@transaction.atomic
def judge_run_create(
    *,
    project: Project,
    judge: Judge,
    created_by: User | None = None,
    scope: str = JudgeRun.Scope.ROUTED,
    item_ids: list[int] | None = None,
    order_mode: str = JudgeRun.OrderMode.BOTH,
    permutations: int = 2,
    cost_cap: Decimal | None = None,
    use_cache: bool = True,
    seed: int | None = None,
    enqueue: bool = True,
    automatic: bool = False,
) -> JudgeRun:
    """A new run (pending); ``enqueue`` sends it to the ``judge`` queue once committed.
    ``automatic``: started by the router (``judge_run_automatic_request``), not by a person."""
    if not judge.active:
        raise InvalidInput(f"judge {judge.name!r} is not active")
    # A judge saved before the operator's limits (or under looser ones) does not run past them.
    for field, problem in (
        ("api_key_env", guards.key_env_problem(judge.key_env)),
        ("base_url", guards.base_url_problem(judge.base_url)),
    ):
        if problem:
            raise InvalidInput(f"judge {judge.name!r}: {field} {problem}", code="judge_config")
    if scope == JudgeRun.Scope.SELECTION:
        item_ids = sorted(set(item_ids or []))
        if not item_ids:
            raise InvalidInput("a selection run needs item ids")
        found = Item.objects.filter(project=project, pk__in=item_ids).count()
        if found != len(item_ids):
            raise InvalidInput("some item ids are not items of this project")
    elif item_ids:
        raise InvalidInput("item ids are only for a selection run")
    else:
        check_scope_has_items(project=project, scope=scope)
    run = JudgeRun(
        project=project,
        judge=judge,
        created_by=created_by,
        scope=scope,
        item_ids=item_ids or [],
        order_mode=order_mode,
        permutations=permutations,
        cost_cap=cost_cap,
        use_cache=use_cache,
        seed=random.getrandbits(31) if seed is None else seed,
        judge_config=judge_config_snapshot(judge),
        automatic=automatic,
    )
    run.full_clean()
    run.save()
    if enqueue:
        _enqueue(run)
    return run


@transaction.atomic
def judge_run_cancel(*, run: JudgeRun) -> JudgeRun:
    """Ask a run to stop: calls in flight finish and are stored, no new ones start."""
    run = JudgeRun.objects.select_for_update().select_related("judge").get(pk=run.pk)
    if run.is_finished:
        raise Conflict(f"the run is already {run.status}")
    if run.status == JudgeRun.Status.PENDING:
        return judge_run_transition(
            run,
            JudgeRun.Status.CANCELLED,
            reason="cancelled before it started",
            cancel_requested=True,
        )
    run.cancel_requested = True
    run.save(update_fields=["cancel_requested"])
    return run


@transaction.atomic
def judge_run_resume(
    *, run: JudgeRun, cost_cap: Decimal | None = None, enqueue: bool = True
) -> JudgeRun:
    """Put a stopped run back on the queue; it skips every verdict already stored."""
    run = JudgeRun.objects.select_for_update().get(pk=run.pk)
    if run.status == JudgeRun.Status.COMPLETED:
        raise Conflict("the run is complete; nothing to resume")
    if run.status == JudgeRun.Status.PENDING and not run.cancel_requested:
        raise Conflict("the run is waiting for a worker")
    if run.status == JudgeRun.Status.RUNNING and judge_run_is_executing(run_id=run.pk):
        raise Conflict("a worker is executing the run")
    # A "running" run that no worker holds was left by a worker that died: resume it.
    if cost_cap is not None:
        run.cost_cap = cost_cap
    if run.automatic and _open_automatic(run.project_id, run.judge_id).exclude(pk=run.pk).exists():
        raise Conflict(
            "another automatic run of this judge is open on the project; "
            "resume this one when it has ended"
        )
    judge_run_transition(
        run, JudgeRun.Status.PENDING, cost_cap=run.cost_cap, cancel_requested=False
    )
    if enqueue:
        _enqueue(run)
    return run


# Automatic runs ---------------------------------------------------------------------------------

AUTOMATIC_LOCK_NAMESPACE = 0x7A4E  # advisory lock namespace of automatic-run planning


def _open_automatic(project_id: int, judge_id: int):
    return JudgeRun.objects.filter(
        project_id=project_id, judge_id=judge_id, automatic=True, status__in=JudgeRun.OPEN
    )


def _automatic_lock(project_id: int, judge_id: int) -> None:
    """Serialise the planning of one (project, judge)'s automatic runs until the transaction
    ends (PostgreSQL; the embedded SQLite shape has one worker). The partial unique constraint
    ``judgerun_one_open_automatic`` is the database's own guarantee behind it."""
    if connection.vendor != "postgresql":
        return
    key = (project_id * 1_000_003 + judge_id) & 0x7FFFFFFF
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", (AUTOMATIC_LOCK_NAMESPACE, key))


def judge_backlog(*, project: Project, judge: Judge) -> list[int]:
    """Items routed to the judges that ``judge`` has not labelled and that no automatic run of
    it has taken yet (a run that stopped keeps its items: resume it to judge them)."""
    taken: set[int] = set()
    for ids in JudgeRun.objects.filter(project=project, judge=judge, automatic=True).values_list(
        "item_ids", flat=True
    ):
        taken.update(ids or [])
    labelled = Annotation.objects.filter(
        item=OuterRef("pk"), source=Annotation.Source.JUDGE, judge=judge.name
    )
    wanted = (
        Item.objects.filter(project=project, route__in=JUDGE_TARGETS)
        .filter(~Exists(labelled))
        .order_by("id")
        .values_list("id", flat=True)
    )
    return [item_id for item_id in wanted.iterator(chunk_size=5000) if item_id not in taken]


@transaction.atomic
def judge_run_automatic_request(
    *, project: Project, judge: Judge, cost_cap: Decimal | None = None, enqueue: bool = True
) -> JudgeRun | None:
    """Have ``judge`` label the project's backlog (``judge_backlog``) in an automatic run.

    Runs coalesce: at most one open automatic run per (project, judge). A pending one takes the
    new items; while one runs, they wait for the next, which the router asks for when the
    running one ends (``run_finished``). Returns the open run, or None when there is nothing to
    judge or the judge is inactive.
    """
    _automatic_lock(project.pk, judge.pk)
    open_run = _open_automatic(project.pk, judge.pk).select_for_update().first()
    if open_run is not None and open_run.status == JudgeRun.Status.RUNNING:
        return open_run  # what arrives meanwhile goes into the next run
    backlog = judge_backlog(project=project, judge=judge)
    if not backlog:
        return open_run
    if open_run is not None:  # pending: not planned yet, so it can still take items
        open_run.item_ids = sorted(set(open_run.item_ids or []) | set(backlog))
        open_run.save(update_fields=["item_ids"])
        return open_run
    if not judge.active:
        return None
    return judge_run_create(
        project=project,
        judge=judge,
        scope=JudgeRun.Scope.SELECTION,
        item_ids=backlog,
        cost_cap=cost_cap,
        enqueue=enqueue,
        automatic=True,
    )
