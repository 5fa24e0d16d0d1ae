"""The importer: every accepted shape, line-numbered errors, all-or-nothing, idempotence."""

import csv
import io
import json

import pandas as pd
import pytest

from annotation.importer import items_import, items_import_file
from annotation.models import Annotation, Candidate, Item
from annotation.readers import read_rows
from tests.factories import ProjectFactory

PAIR = {
    "external_id": "p-1",
    "prompt": "Say hi",
    "candidates": [{"text": "hi", "model": "m1"}, {"text": "hello", "model": "m2"}],
    "metadata": {"domain": "chat"},
    "gold": "A",
    "labels": [
        {"source": "human", "annotator": "ann1", "choice": "B", "strength": 2},
        {"source": "judge", "judge": "gpt-4/vanilla", "order": "BA", "choice": "A"},
        {
            "source": "judge",
            "judge": "gpt-4/vanilla",
            "order": "AB",
            "choice": None,
            "raw_output": "I cannot decide",
        },
    ],
}


def jsonl(*rows) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rows))


def run(project, *rows, **kwargs):
    return items_import_file(project=project, source=jsonl(*rows), fmt="jsonl", **kwargs)


@pytest.fixture
def pairwise(db):
    return ProjectFactory(task_type="pairwise")


def test_tandem_row_becomes_item_candidates_and_labels(pairwise):
    result = run(pairwise, PAIR)

    assert (result.created, result.skipped, result.failed, result.labels_created) == (1, 0, 0, 3)
    item = Item.objects.get(project=pairwise, external_id="p-1")
    assert item.prompt == "Say hi" and item.gold == "A"
    assert item.metadata == {"domain": "chat"}
    assert list(item.candidates.values_list("position", "text", "model")) == [
        (0, "hi", "m1"),
        (1, "hello", "m2"),
    ]
    labels = list(item.annotations.order_by("id"))
    assert [(a.source, a.external_annotator, a.judge, a.order) for a in labels] == [
        ("human", "ann1", "", ""),
        ("judge", "", "gpt-4/vanilla", "BA"),
        ("judge", "", "gpt-4/vanilla", "AB"),
    ]
    assert labels[0].payload == {"choice": "B", "strength": 2}
    assert labels[2].payload == {"choice": None}
    assert labels[2].raw_output == "I cannot decide"
    assert all(a.imported for a in labels)


def test_reimporting_the_same_file_creates_nothing(pairwise):
    run(pairwise, PAIR, {**PAIR, "external_id": "p-2"})
    again = run(pairwise, PAIR, {**PAIR, "external_id": "p-2"})

    assert (again.created, again.skipped, again.labels_created) == (0, 2, 0)
    assert Item.objects.count() == 2
    assert Annotation.objects.count() == 6


def test_rows_without_external_id_are_deduplicated_by_content(pairwise):
    row = {k: v for k, v in PAIR.items() if k != "external_id"}
    first = run(pairwise, row, row)
    second = run(pairwise, row)

    assert (first.created, first.skipped) == (1, 1)
    assert (second.created, second.skipped) == (0, 1)
    assert Item.objects.get().external_id.startswith("h:")


def test_a_file_with_errors_writes_nothing_and_reports_each_line(pairwise):
    rows = [
        PAIR,
        {**PAIR, "external_id": "p-2", "candidates": [{"text": "only one"}]},
        {**PAIR, "external_id": "p-3", "labels": [{"source": "robot", "choice": "A"}]},
    ]
    buffer = io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + b"{not json\n")

    result = items_import_file(project=pairwise, source=buffer, fmt="jsonl")

    assert not result.written
    assert result.created == 0 and result.failed == 3
    assert [(e.line, e.message) for e in result.errors[:2]] == [
        (2, "a pairwise item needs exactly 2 candidates; this row has 1"),
        (3, "labels[0].source must be 'human' or 'judge'; got 'robot'"),
    ]
    assert result.errors[2].line == 4
    assert result.errors[2].message.startswith("not valid JSON")
    assert not Item.objects.exists() and not Candidate.objects.exists()


def test_partial_import_keeps_the_good_rows(pairwise):
    bad = {**PAIR, "external_id": "p-2", "gold": "C"}
    result = run(pairwise, PAIR, bad, partial=True)

    assert result.written and (result.created, result.failed) == (1, 1)
    assert result.errors[0].line == 2 and "gold" in result.errors[0].message
    assert Item.objects.filter(project=pairwise).count() == 1


def test_same_external_id_for_different_items_in_one_file_is_an_error(pairwise):
    other = {**PAIR, "prompt": "Something else"}
    result = run(pairwise, PAIR, other)

    assert result.failed == 1
    assert "already used on line 1" in result.errors[0].message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"candidates": ["a", "b"]}, "prompt (or messages) is missing"),
        ({"prompt": 3, "candidates": ["a", "b"]}, "prompt must be text"),
        (
            {
                "prompt": "x",
                "messages": [{"role": "user", "content": "x"}],
                "candidates": ["a", "b"],
            },
            "give either prompt or messages, not both",
        ),
        (
            {"messages": [{"role": "wizard", "content": "x"}], "candidates": ["a", "b"]},
            "messages[0].role must be one of",
        ),
        (
            {
                "prompt": "x",
                "candidates": ["a", "b"],
                "labels": [{"source": "judge", "choice": "A"}],
            },
            "a judge label needs 'judge'",
        ),
        (
            {
                "prompt": "x",
                "candidates": ["a", "b"],
                "labels": [{"source": "human", "choice": "A", "order": "AC"}],
            },
            "order 'AC'",
        ),
        (
            {
                "prompt": "x",
                "candidates": ["a", "b"],
                "labels": [{"source": "human", "choice": "C"}],
            },
            "choice must be one of",
        ),
        ({"foo": 1}, "unknown row shape"),
    ],
)
def test_bad_rows_get_a_reason(pairwise, row, message):
    result = run(pairwise, row)
    assert result.failed == 1
    assert message in result.errors[0].message


def test_conversation_items(pairwise):
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
        ],
        "candidates": ["Hello.", "Hi there, how are you today?"],
    }
    run(pairwise, row)
    item = Item.objects.get()
    assert item.prompt == "" and item.messages[1] == {"role": "user", "content": "Hi?"}


def test_trl_preference_rows_standard_and_conversational(pairwise):
    standard = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    conversational = {
        "prompt": [{"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris"}],
        "rejected": [{"role": "assistant", "content": "Lyon"}],
    }
    implicit = {
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go."}],
    }
    result = run(pairwise, standard, conversational, implicit, preference_source="human")

    assert (result.created, result.failed, result.labels_created) == (3, 0, 3)
    items = list(Item.objects.order_by("id").prefetch_related("candidates", "annotations"))
    assert [c.text for c in items[0].candidates.all()] == ["4", "5"]
    assert items[1].messages == [{"role": "user", "content": "Capital of France?"}]
    assert [c.text for c in items[1].candidates.all()] == ["Paris", "Lyon"]
    assert items[2].messages == [{"role": "user", "content": "Hi"}]
    assert [c.text for c in items[2].candidates.all()] == ["Hello!", "Go."]
    label = items[0].annotations.get()
    assert (label.source, label.payload, label.external_annotator) == (
        "human",
        {"choice": "A"},
        "dataset",
    )


def test_trl_labels_are_not_recorded_as_human_unless_asked(pairwise):
    """Regression (issue 17): an AI-feedback set must not silently become "human" labels."""
    result = run(pairwise, {"prompt": "a", "chosen": "b", "rejected": "c"})
    assert (result.created, result.labels_created) == (1, 0)
    assert not Annotation.objects.exists()


def test_trl_preference_source_can_be_judge_or_none(pairwise):
    run(pairwise, {"prompt": "a", "chosen": "b", "rejected": "c"}, preference_source="judge")
    run(pairwise, {"prompt": "x", "chosen": "y", "rejected": "z"}, preference_source="none")
    assert list(Annotation.objects.values_list("source", "judge")) == [("judge", "dataset")]


def test_trl_unpaired_rows_go_to_thumbs_projects(db):
    thumbs = ProjectFactory(task_type="thumbs")
    result = run(
        thumbs,
        {"prompt": "Tell a joke", "completion": "Why did...", "label": True},
        {"prompt": "Tell a joke", "completion": "No.", "label": False},
        preference_source="human",
    )
    assert result.created == 2
    assert sorted(a.payload["thumb"] for a in Annotation.objects.all()) == ["down", "up"]

    wrong = run(ProjectFactory(task_type="pairwise"), {"prompt": "a", "completion": "b"})
    assert "thumbs project" in wrong.errors[0].message


def test_listwise_rows_with_rankings(db):
    listwise = ProjectFactory(task_type="listwise")
    row = {
        "prompt": "Rank",
        "candidates": ["one", "two", "three"],
        "gold": ["B", "A", "C"],
        "labels": [{"source": "human", "annotator": "x", "ranking": ["C", ["A", "B"]]}],
    }
    bad = {**row, "external_id": "bad", "labels": [{"source": "human", "ranking": ["A", "B"]}]}
    result = run(listwise, row, bad, partial=True)

    assert result.created == 1
    assert Annotation.objects.get().payload == {"ranking": ["C", ["A", "B"]]}
    assert "ranking leaves out C" in result.errors[0].message


def test_csv_with_json_text_columns_reports_physical_lines(pairwise):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["external_id", "prompt", "candidates", "labels", "gold"])
    writer.writerow(["c-1", "multi\nline prompt", json.dumps(["a", "b"]), "", "A"])
    writer.writerow(["c-2", "ok", json.dumps(["a"]), "", ""])
    writer.writerow(["c-3", "ok", json.dumps(["x", "y"]), json.dumps([PAIR["labels"][0]]), ""])
    data = io.BytesIO(buffer.getvalue().encode())

    result = items_import_file(project=pairwise, source=data, fmt="csv", partial=True)

    assert (result.created, result.failed, result.labels_created) == (2, 1, 1)
    assert result.errors[0].line == 4  # the multi-line record took lines 2-3
    assert Item.objects.get(external_id="c-1").prompt == "multi\nline prompt"


def test_parquet_with_nested_columns(pairwise, tmp_path):
    path = tmp_path / "items.parquet"
    pd.DataFrame(
        [
            {"prompt": "p1", "chosen": "a", "rejected": "b"},
            {"prompt": "p2", "chosen": "c", "rejected": None},
        ]
    ).to_parquet(path)

    result = items_import_file(project=pairwise, source=path, partial=True)

    assert result.created == 1
    assert result.errors[0].line == 2 and "both 'chosen' and 'rejected'" in result.errors[0].message


def test_pandalm_sample_imports_with_all_its_labels(pairwise, settings):
    settings.TANDEM_IMPORT_BATCH_SIZE = 50  # several batches, one transaction
    path = settings.BASE_DIR / "tests" / "fixtures" / "pandalm_sample.jsonl"
    result = items_import_file(project=pairwise, source=path)

    assert (result.created, result.failed, result.labels_created) == (120, 0, 600)
    assert Annotation.objects.filter(source="judge").count() == 240


def test_error_list_is_capped_but_counted(pairwise, settings):
    settings.TANDEM_IMPORT_MAX_REPORTED_ERRORS = 2
    result = items_import(project=pairwise, rows=[(i, {"x": i}) for i in range(1, 6)])
    assert result.failed == 5 and len(result.errors) == 2 and result.errors_truncated


def test_readers_skip_blank_lines_and_keep_numbering():
    rows = list(read_rows(io.BytesIO(b'{"a": 1}\n\n{"a": 2}\n'), "jsonl"))
    assert [line for line, _ in rows] == [1, 3]


def test_portable_writer_gives_the_same_result(pairwise, monkeypatch):
    """The embedded shape (SQLite) writes with bulk_create; check it on this database too."""
    import annotation.importer as importer

    monkeypatch.setattr(importer, "_writer_for", importer._OrmWriter)
    result = run(pairwise, PAIR)
    assert (result.created, result.labels_created) == (1, 3)
    assert Item.objects.get().candidates.count() == 2


def test_reimport_into_a_project_with_items_checks_each_batch(pairwise, settings):
    settings.TANDEM_IMPORT_BATCH_SIZE = 2
    run(pairwise, *({**PAIR, "external_id": f"e{i}"} for i in range(3)))
    result = run(pairwise, *({**PAIR, "external_id": f"e{i}"} for i in range(5)))
    assert (result.created, result.skipped) == (2, 3)
    assert Item.objects.count() == 5


def test_a_failed_write_rolls_everything_back(pairwise, monkeypatch, settings):
    """A database error on the writer thread surfaces in the caller and undoes the import."""
    from django.db import connection

    import annotation.importer as importer

    if connection.vendor != "postgresql":
        pytest.skip("the COPY writer is PostgreSQL's")
    settings.TANDEM_IMPORT_BATCH_SIZE = 1
    calls = []
    original = importer._CopyWriter.write

    def failing(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        original(self, rows)

    monkeypatch.setattr(importer._CopyWriter, "write", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run(pairwise, PAIR, {**PAIR, "external_id": "p-2"}, {**PAIR, "external_id": "p-3"})
    assert not Item.objects.exists()
