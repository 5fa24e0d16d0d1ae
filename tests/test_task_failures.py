"""``tandem.task_failures.RecordedFailure``: the one failure path of Tandem's Celery tasks."""

import logging

from tandem.task_failures import RecordedFailure


class _Recording(RecordedFailure):
    name = "tests.recording"
    failure_argument = "job_id"
    failure_subject = "test job"

    def __init__(self) -> None:
        self.recorded: list[tuple[int, str]] = []

    def record_failure(self, row_id, reason):
        self.recorded.append((row_id, reason))


def test_the_row_from_the_arguments_ends_with_the_reason(caplog):
    task = _Recording()
    with caplog.at_level(logging.ERROR, logger="tandem.task_failures"):
        task.on_failure(ValueError("bad row"), "t1", (7,), {}, None)
        task.on_failure(KeyError("k"), "t2", (), {"job_id": 8}, None)
        task.on_failure(RuntimeError("x"), "t3", (), {}, None)  # no id: nothing to end
    assert task.recorded == [(7, "ValueError: bad row"), (8, "KeyError: 'k'")]
    assert "test job 7 failed: ValueError: bad row" in caplog.text
    assert "test job None failed: RuntimeError: x" in caplog.text


def test_without_a_row_the_reason_is_logged_with_the_arguments(caplog):
    class Logged(RecordedFailure):
        name = "tests.logged"

    with caplog.at_level(logging.ERROR, logger="tandem.task_failures"):
        Logged().on_failure(OSError("disk"), "t", (3,), {"item_ids": [1]}, None)
    assert "tests.logged failed for (3,) {'item_ids': [1]}: OSError: disk" in caplog.text
