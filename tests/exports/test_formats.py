"""Export formats and file formats: every file loads with Hugging Face ``datasets`` as written,
rows say where their label came from, raw exports re-import with no label lost, the same data
gives byte-identical files, and no prompt is in two splits."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'tandem[hf]')")

from annotation.importer import items_import_file  # noqa: E402
from annotation.models import Annotation, Item  # noqa: E402
from exports.builder import export_preview, export_spec, export_write  # noqa: E402
from exports.writers import file_sha256  # noqa: E402
from tests.factories import ProjectFactory  # noqa: E402


def export(project, tmp_path, name="out", **params):
    params.setdefault("file_format", "jsonl")
    spec = export_spec(project=project, **params)
    out = tmp_path / name
    manifest = export_write(project=project, spec=spec, out_dir=out)
    return out, manifest


def load(out: Path, file_format: str, split: str = "train"):
    if file_format == "hf":
        return datasets.load_from_disk(str(out))[split]
    builder = {"jsonl": "json", "parquet": "parquet", "csv": "csv"}[file_format]
    files = {split: str(out / f"{split}.{file_format}")}
    return datasets.load_dataset(builder, data_files=files, split=split)


def by_id(dataset):
    return {row["external_id"]: row for row in dataset}


@pytest.mark.parametrize("file_format", ["jsonl", "parquet", "csv", "hf"])
def test_preference_rows_load_in_every_file_format(project, pairwise, tmp_path, file_format):
    out, manifest = export(project, tmp_path, format="preference", file_format=file_format)
    rows = by_id(load(out, file_format))
    ext = {item.external_id: key for key, item in pairwise.items()}
    # A or B only: ties, both bad and unresolved items make no pair.
    assert sorted(ext[e] for e in rows) == ["a", "b", "flip", "hybrid", "judge"]
    assert manifest["rows"] == {"train": 5}
    a = rows[pairwise["a"].external_id]
    assert a["prompt"] == "p-shared" and a["chosen"].startswith("Response A")
    assert a["rejected"].startswith("Response B")
    assert a["provenance"] == "human" and a["method"] == "majority"
    assert a["agreement"] == pytest.approx(2 / 3)
    assert a["source_dataset"] == "pandalm"
    meta = a["metadata"]  # JSON text, except in JSONL (an object; datasets fills absent keys)
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert {k: v for k, v in meta.items() if v is not None} == {"dataset": "pandalm"}
    b = rows[pairwise["b"].external_id]
    assert b["chosen"].startswith("Response B") and b["license"] == "cc-by-4.0"
    assert rows[pairwise["judge"].external_id]["provenance"] == "judge"
    assert rows[pairwise["hybrid"].external_id]["provenance"] == "hybrid"


def test_conversational_rows_are_message_lists(chat, tmp_path):
    out, manifest = export(chat, tmp_path, format="preference", file_format="parquet")
    assert manifest["conversational"] is True
    row = load(out, "parquet")[0]
    assert row["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
    ]
    assert row["chosen"][0]["role"] == "assistant" and "Response B" in row["chosen"][0]["content"]
    # Standard style flattens the conversation to text.
    out, _ = export(chat, tmp_path, "std", format="preference", style="standard")
    assert load(out, "jsonl")[0]["prompt"] == "Be brief.\n\nHi?"


def test_kto_from_pairs_and_from_thumbs(project, pairwise, thumbs, tmp_path):
    out, _ = export(project, tmp_path, format="kto", file_format="parquet")
    rows = load(out, "parquet")
    labels = {(r["external_id"], r["candidate"]): r["label"] for r in rows}
    a, bad = pairwise["a"].external_id, pairwise["both_bad"].external_id
    assert labels[(a, "A")] is True and labels[(a, "B")] is False
    assert labels[(bad, "A")] is False and labels[(bad, "B")] is False
    assert not any(e == pairwise["tie"].external_id for e, _ in labels)

    out, _ = export(thumbs, tmp_path, "thumbs", format="kto", file_format="csv")
    rows = load(out, "csv")
    assert sorted(r["label"] for r in rows) == [False, True]


def test_reward_pairs_carry_a_margin(project, pairwise, tmp_path):
    out, manifest = export(project, tmp_path, format="reward", file_format="hf")
    rows = by_id(load(out, "hf"))
    assert rows[pairwise["b"].external_id]["margin"] == 1.0
    assert rows[pairwise["a"].external_id]["margin"] == pytest.approx(1 / 3)
    assert rows[pairwise["a"].external_id]["strength"] == 2.0
    assert {"name": "margin", "type": "double"} in manifest["schema"]


@pytest.mark.parametrize(("pairs", "expected"), [("all", 5), ("best", 4)])
def test_listwise_to_pairs(listwise, tmp_path, pairs, expected):
    out, manifest = export(listwise, tmp_path, format="listwise-pairs", pairs=pairs)
    rows = list(load(out, "jsonl"))
    assert manifest["rows_total"] == expected == len(rows)
    got = {(r["chosen_candidate"], r["rejected_candidate"]) for r in rows}
    if pairs == "all":  # C > A > B, and B = C > A: no pair inside a tied tier
        assert got == {("C", "A"), ("C", "B"), ("A", "B"), ("B", "A")}
    assert ("B", "C") not in got and ("C", "B") in got


def test_a_format_refuses_other_task_types(listwise):
    from tandem.errors import InvalidInput

    with pytest.raises(InvalidInput):
        export_spec(project=listwise, format="preference", file_format="jsonl")


@pytest.mark.parametrize("file_format", ["jsonl", "parquet", "csv"])
def test_raw_export_reimports_with_no_label_lost(project, pairwise, tmp_path, file_format):
    out, manifest = export(project, tmp_path, format="raw", file_format=file_format)
    assert manifest["rows_total"] == len(pairwise)
    load(out, file_format)  # datasets reads it too
    target = ProjectFactory(overlap=3)
    result = items_import_file(project=target, source=out / f"train.{file_format}", fmt=file_format)
    assert result.failed == 0 and result.created == len(pairwise), result.errors

    def labels(p):
        current = Annotation.objects.filter(project=p, superseded_by__isnull=True)
        return sorted(
            (
                a.item.external_id,
                a.source,
                a.annotator.username if a.annotator else a.external_annotator,
                a.judge,
                a.order,
                json.dumps(a.payload, sort_keys=True),
                a.confidence,
                a.time_spent_ms,
                json.dumps(a.metadata, sort_keys=True),
            )
            for a in current.select_related("item", "annotator")
        )

    assert labels(target) == labels(project)
    for old in Item.objects.filter(project=project).prefetch_related("candidates"):
        new = Item.objects.get(project=target, external_id=old.external_id)
        assert new.prompt == old.prompt and new.gold == old.gold
        assert [(c.text, c.model) for c in new.candidates.all()] == [
            (c.text, c.model) for c in old.candidates.all()
        ]
        meta = dict(new.metadata)
        preference = meta.pop("preference")  # kept as item metadata (JSON text from Parquet/CSV)
        if isinstance(preference, str):
            preference = json.loads(preference)
        assert preference["provenance"] == old.preference.provenance
        assert meta == old.metadata


@pytest.mark.parametrize("file_format", ["jsonl", "parquet", "csv", "hf"])
def test_the_same_export_twice_is_byte_identical(project, pairwise, tmp_path, file_format):
    params = {"format": "preference", "file_format": file_format, "splits": "train=0.5,test=0.5"}
    first, m1 = export(project, tmp_path, "one", **params)
    second, _ = export(project, tmp_path, "two", **params)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    assert [f["sha256"] for f in m1["files"]] == [
        file_sha256(first / f["path"]) for f in m1["files"]
    ]


def test_no_prompt_in_two_splits_and_splits_are_stable(project, pairwise, tmp_path):
    from tests.exports.conftest import labelled

    for i in range(60):  # 30 prompts, each shared by two items
        item = labelled(project, humans=["A", "A", "A"])
        item.prompt = f"shared prompt {i // 2}"
        item.save(update_fields=["prompt"])
    from exports.preferences import preferences_recompute

    preferences_recompute(project=project)
    params = {"format": "raw", "splits": "train=0.7,test=0.2,dev=0.1", "seed": 3}
    out, manifest = export(project, tmp_path, **params)
    where = {}
    for split in ("train", "test", "dev"):
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert where.setdefault(row["prompt"], split) == split, row["prompt"]
            where[row["external_id"]] = split
    assert set(manifest["rows"]) == {"train", "test", "dev"}
    assert sum(manifest["rows"].values()) == Item.objects.filter(project=project).count()
    assert manifest["rows"]["train"] > manifest["rows"]["dev"]
    # More data later: the items already exported stay in their split.
    labelled(project, humans=["B", "B", "B"])
    out2, _ = export(project, tmp_path, "later", **params)
    for split in ("train", "test", "dev"):
        for line in (out2 / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert where.get(row["external_id"], split) == split
    # Another seed gives another split.
    out3, _ = export(project, tmp_path, "seed4", **{**params, "seed": 4})
    assert (out3 / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()


def rows_of(project, tmp_path, filters, name="f"):
    out, _ = export(project, tmp_path, name, format="raw", filters=filters)
    return sorted(json.loads(line)["external_id"] for line in open(out / "train.jsonl"))


def test_filters(project, pairwise, tmp_path, annotator):
    ext = {key: item.external_id for key, item in pairwise.items()}
    pick = lambda *keys: sorted(ext[k] for k in keys)  # noqa: E731
    assert rows_of(project, tmp_path, {"provenance": ["judge"]}) == pick("judge")
    assert rows_of(project, tmp_path, {"provenance": "hybrid"}, "h") == pick("hybrid", "flip")
    assert rows_of(project, tmp_path, {"agreement_min": 0.99}, "ag") == pick(
        "b", "both_bad", "judge", "hybrid"
    )
    assert rows_of(project, tmp_path, {"judges": ["gpt"]}, "j") == pick("judge", "hybrid", "flip")
    assert rows_of(project, tmp_path, {"metadata": {"dataset": "pandalm"}}, "m") == pick("a")
    assert rows_of(project, tmp_path, {"method": "bradley_terry"}, "me") == []
    # A user's label (not an imported name) counts by username.
    Annotation.objects.create(
        project=project,
        item=pairwise["open"],
        source="human",
        annotator=annotator,
        payload={"choice": "A"},
    )
    assert rows_of(project, tmp_path, {"annotators": annotator.username}, "u") == pick("open")
    assert rows_of(project, tmp_path, {"annotators": ["h2"]}, "h2") == pick(
        "a", "b", "tie", "both_bad", "hybrid", "flip"
    )
    Item.objects.filter(pk=pairwise["b"].pk).update(gold="B")
    assert rows_of(project, tmp_path, {"gold": True}, "g") == pick("b")
    assert len(rows_of(project, tmp_path, {"gold": "false"}, "ng")) == len(pairwise) - 1
    Annotation.objects.filter(item=pairwise["tie"]).update(created_at="2020-01-02T12:00:00Z")
    assert rows_of(
        project, tmp_path, {"labelled_from": "2020-01-01", "labelled_to": "2020-01-02"}, "d"
    ) == pick("tie")


@pytest.mark.parametrize(
    "filters",
    [
        {"provenance": ["robot"]},
        {"agreement_min": 3},
        {"labelled_from": "yesterday"},
        {"metadata": {"a__b": "x"}},
        {"gold": "maybe"},
        {"colour": "red"},
    ],
)
def test_bad_filters_are_refused(project, filters):
    from tandem.errors import InvalidInput

    with pytest.raises(InvalidInput):
        export_spec(project=project, format="raw", file_format="jsonl", filters=filters)


@pytest.mark.parametrize("splits", ["train=0.5", "train=0.5,train=0.5", "a=x", "Train=1", "x"])
def test_bad_splits_are_refused(project, splits):
    from tandem.errors import InvalidInput

    with pytest.raises(InvalidInput):
        export_spec(project=project, format="raw", file_format="jsonl", splits=splits)


def test_preview_counts_rows_like_the_export(project, pairwise, tmp_path):
    for fmt in ("preference", "kto", "reward", "raw"):
        spec = export_spec(project=project, format=fmt, file_format="jsonl")
        preview = export_preview(project=project, spec=spec)
        _, manifest = export(project, tmp_path, fmt, format=fmt)
        assert preview["rows"] == manifest["rows_total"], fmt
        assert preview["items"] == len(pairwise) and preview["resolved"] == len(pairwise) - 1


def test_manifest(project, pairwise, tmp_path):
    from routing.models import RoutingPolicy

    RoutingPolicy.objects.create(project=project, name="all_judge", judges=["gpt"], version=4)
    out, manifest = export(
        project, tmp_path, format="preference", file_format="parquet", splits="train=0.8,test=0.2"
    )
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    assert manifest["format"] == "preference" and manifest["file_format"] == "parquet"
    assert manifest["splits"] == {"train": 0.8, "test": 0.2} and manifest["seed"] == 0
    assert sum(manifest["rows"].values()) == 5
    for entry in manifest["files"]:
        assert entry["sha256"] == file_sha256(out / entry["path"])
        assert (
            pq.ParquetFile(out / entry["path"]).metadata.num_rows
            == manifest["rows"][entry["path"].removesuffix(".parquet")]
        )
    assert manifest["tandem"]["version"] and manifest["tandem"]["git_revision"]
    assert manifest["routing_policies"] == [
        {"name": "all_judge", "version": 4, "active": True, "judges": ["gpt"]}
    ]
    assert manifest["licenses"] == {"cc-by-4.0": 1, "unknown": 4}
    flips = manifest["label_flip_rates"]
    human = flips["human_majority"]
    # Items labelled by both: hybrid (AAA vs A) and flip (BBA vs A).
    assert human["items"] == 2 and human["annotator_pairs"] == 6
    assert human["annotator_agreement"] == pytest.approx(4 / 6, abs=1e-4)
    assert 0 < human["flip_rate"] < 0.5
    gpt = flips["judges"]["gpt"]
    assert gpt["items"] == 2 and gpt["disagreement_with_human_majority"] == 0.5
    assert 0 <= gpt["flip_rate"] <= 0.5


def test_missing_preferences_are_computed_before_the_export(project, tmp_path):
    from tests.exports.conftest import labelled

    item = labelled(project, humans=["B"])  # overlap 1, no preference row yet
    _, manifest = export(project, tmp_path, format="preference")
    assert manifest["rows_total"] == 1 and item.preference.choice == "B"


def test_flip_rates_of_thumbs_and_none_for_rankings(thumbs, listwise, tmp_path):
    from exports.flip_rates import flip_rates_estimate
    from tests.factories import AnnotationFactory

    item = thumbs.items.first()
    AnnotationFactory(item=item, external_annotator="h2", payload={"thumb": "up"})
    AnnotationFactory(item=item, source="judge", judge="j", payload={"thumb": "down"})
    rates = flip_rates_estimate(project=thumbs, items=thumbs.items.all())
    assert rates["human_majority"]["items"] == 1 and rates["judges"]["j"]["items"] == 1
    assert "note" in flip_rates_estimate(project=listwise, items=listwise.items.all())
