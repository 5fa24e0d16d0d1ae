"""Every bad input is a 400 (or the workspace's 422) with the error shape, never a 500, and
nothing is written. One regression test per case of issue 14."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Annotation, ImportJob, Item
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def import_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/items/import/"


def row(i=1, **extra):
    return {"external_id": f"r{i}", "prompt": f"p{i}", "candidates": ["a", "b"], **extra}


def nested(depth: int):
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def assert_error_shape(response, status=400):
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    return body["error"]


def upload(api, user, project, name, content: bytes, **fields):
    return api(user).post(
        import_url(project),
        {"file": SimpleUploadedFile(name, content), **fields},
        format="multipart",
    )


class TestJsonBodies:
    def test_a_body_nested_100000_deep_is_a_400(self, api, manager):
        body = "[" * 100_000 + "]" * 100_000
        response = api(manager).post("/api/v1/projects/", body, content_type="application/json")
        assert "JSON parse error" in assert_error_shape(response)["message"]

    def test_a_body_nested_past_the_limit_is_a_400(self, api, manager, project):
        response = api(manager).patch(
            f"/api/v1/projects/{project.pk}/", {"label_schema": nested(40)}, format="json"
        )
        assert "nested deeper than 32" in assert_error_shape(response)["message"]

    def test_nul_in_any_json_text_is_a_400(self, api, manager, project):
        response = api(manager).patch(
            f"/api/v1/projects/{project.pk}/",
            {"label_schema": {"aspects": ["help\u0000ful"]}},
            format="json",
        )
        assert "NUL" in assert_error_shape(response)["message"]

    def test_a_lone_surrogate_in_a_json_body_is_a_400(self, api, manager, project):
        body = b'{"name": "bad \\ud800 text"}'
        response = api(manager).patch(
            f"/api/v1/projects/{project.pk}/", body, content_type="application/json"
        )
        assert_error_shape(response)

    def test_patch_of_a_non_object_label_schema_is_a_400(self, api, manager, project):
        for bad in ([], "x", 3, [1, 2]):
            response = api(manager).patch(
                f"/api/v1/projects/{project.pk}/", {"label_schema": bad}, format="json"
            )
            assert_error_shape(response)


class TestImportedRows:
    def test_metadata_nested_500_deep_is_a_row_error_with_its_line(self, api, manager, project):
        rows = [row(1), row(2, metadata=nested(500))]
        response = api(manager).post(import_url(project), {"rows": rows}, format="json")
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert errors[0]["line"] == 2 and "nested deeper than" in errors[0]["message"]
        assert not Item.objects.exists()

    def test_deep_metadata_in_a_file_is_a_row_error(self, api, manager, project):
        text = "\n".join(json.dumps(r) for r in [row(1), row(2, metadata=nested(500))])
        response = upload(api, manager, project, "x.jsonl", text.encode())
        assert response.status_code == 400
        assert response.json()["errors"][0]["line"] == 2
        assert not Item.objects.exists()

    @pytest.mark.parametrize(
        "bad",
        [
            {"prompt": "p\u0000"},
            {"candidates": ["a\u0000", "b"]},
            {"metadata": {"k": "v\u0000"}},
            {"metadata": {"k\u0000": "v"}},
        ],
    )
    def test_nul_is_a_row_error_with_its_line(self, api, manager, project, bad):
        rows = [row(1), {**row(2), **bad}]
        response = api(manager).post(import_url(project), {"rows": rows}, format="json")
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert error["line"] == 2 and "NUL" in error["message"]
        assert not Item.objects.exists()

    def test_nul_and_lone_surrogates_in_a_jsonl_file(self, api, manager, project):
        lines = [
            json.dumps(row(1)),
            json.dumps(row(2, prompt="a\u0000b")),
            '{"external_id": "r3", "prompt": "bad \\udc00", "candidates": ["a", "b"]}',
        ]
        response = upload(api, manager, project, "x.jsonl", "\n".join(lines).encode())
        assert response.status_code == 400
        assert [e["line"] for e in response.json()["errors"]] == [2, 3]
        assert not Item.objects.exists()

    def test_nul_in_a_csv_file(self, api, manager, project):
        text = 'external_id,prompt,candidates\nr1,p,"[""a"",""b""]"\nr2,"a\x00b","[""a"",""b""]"\n'
        response = upload(api, manager, project, "x.csv", text.encode())
        assert response.status_code == 400
        assert response.json()["errors"][0]["line"] == 3

    def test_a_listwise_ranking_holding_an_object(self, api, manager):
        project = ProjectFactory(task_type="listwise")
        MembershipFactory(project=project, user=manager, role="manager")
        bad = row(1, candidates=["a", "b", "c"])
        bad["labels"] = [{"source": "human", "annotator": "x", "ranking": [{"a": 1}, "B", "C"]}]
        response = api(manager).post(import_url(project), {"rows": [bad]}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["line"] == 1

    def test_rows_per_json_request_are_capped(self, api, manager, project, settings):
        settings.TANDEM_IMPORT_MAX_JSON_ROWS = 2
        rows = [row(i) for i in range(3)]
        response = api(manager).post(import_url(project), {"rows": rows}, format="json")
        assert "at most 2 rows" in json.dumps(assert_error_shape(response))
        assert not Item.objects.exists()

    def test_text_sizes_are_capped(self, api, manager, project, settings):
        settings.TANDEM_MAX_PROMPT_CHARS = 10
        settings.TANDEM_MAX_CANDIDATE_CHARS = 5
        settings.TANDEM_MAX_METADATA_BYTES = 20
        rows = [
            row(1, prompt="x" * 11),
            row(2, candidates=["a" * 6, "b"]),
            row(3, metadata={"k": "v" * 30}),
            row(4),
        ]
        response = api(manager).post(import_url(project), {"rows": rows}, format="json")
        assert response.status_code == 400
        messages = {e["line"]: e["message"] for e in response.json()["errors"]}
        assert set(messages) == {1, 2, 3}
        assert "longer than 10" in messages[1] and "longer than 5" in messages[2]
        assert "larger than 20 bytes" in messages[3]


class TestFiles:
    def test_a_corrupt_parquet_is_a_clear_400(self, api, manager, project):
        response = upload(api, manager, project, "x.parquet", b"this is not parquet at all")
        error = assert_error_shape(response)
        assert "not a readable Parquet file" in error["message"]

    def test_a_corrupt_parquet_in_the_background_leaves_no_job_and_no_upload(
        self, api, manager, project, settings, tmp_path
    ):
        settings.MEDIA_ROOT = tmp_path
        response = upload(api, manager, project, "x.parquet", b"PAR1 garbage", background=True)
        assert "not a readable Parquet file" in assert_error_shape(response)["message"]
        assert not ImportJob.objects.exists()
        assert not list(tmp_path.rglob("*.parquet"))

    def test_a_parquet_with_bad_text_is_a_row_error(self, api, manager, project, tmp_path):
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        table = pa.table(
            {
                "external_id": ["r1", "r2"],
                "prompt": ["fine", "nul \x00 here"],
                "candidates": ['["a", "b"]', '["a", "b"]'],
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        response = upload(api, manager, project, "x.parquet", buffer.getvalue())
        assert response.status_code == 400
        assert response.json()["errors"][0]["line"] == 2

    def test_uploads_past_the_limit_are_refused(self, api, manager, project, settings):
        settings.TANDEM_MAX_UPLOAD_BYTES = 1000
        content = "\n".join(json.dumps(row(i)) for i in range(100)).encode()
        assert len(content) > 1000
        response = upload(api, manager, project, "x.jsonl", content)
        assert "TANDEM_MAX_UPLOAD_BYTES" in assert_error_shape(response)["message"]
        assert not Item.objects.exists()

    def test_big_uploads_stream_to_disk(self, api, manager, project, settings):
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # everything bigger goes to a temporary file
        content = "\n".join(json.dumps(row(i)) for i in range(50)).encode()
        response = upload(api, manager, project, "x.jsonl", content)
        assert response.status_code == 201 and Item.objects.count() == 50


class TestParameters:
    def test_a_non_numeric_import_job_id_is_a_404(self, api, manager):
        for bad in ("abc", "²", "1.5"):
            response = api(manager).get(f"/api/v1/import-jobs/{bad}/")
            assert assert_error_shape(response, 404)["code"] == "not_found"

    @pytest.mark.parametrize(
        "query",
        ["annotator=%00", "judge=%00", "source=%00", "project=%C2%B2", "item=99999999999999999999"],
    )
    def test_bad_annotation_filters_are_a_400(self, api, manager, query):
        response = api(manager).get(f"/api/v1/annotations/?{query}")
        assert response.status_code in (400, 200)
        if response.status_code == 400:
            assert_error_shape(response)
        else:
            assert response.json()["results"] == []

    def test_nul_in_a_query_is_a_400(self, api, manager):
        assert_error_shape(api(manager).get("/api/v1/annotations/?annotator=%00"))
        assert_error_shape(api(manager).get("/api/v1/projects/?slug=a%00"))
        assert_error_shape(api(manager).get("/api/v1/judge-runs/?project=%C2%B2"), 400)

    def test_a_superscript_digit_in_a_numeric_member_id(self, api, manager, project):
        response = api(manager).delete(f"/api/v1/projects/{project.pk}/members/²/")
        assert response.status_code == 404


class TestSubmits:
    @pytest.fixture
    def lease(self, api, project, annotator):
        ItemFactory(project=project)
        return api(annotator).post(f"/api/v1/projects/{project.pk}/next/").json()["assignment"]

    def submit(self, api, user, lease, **payload):
        return api(user).post(
            f"/api/v1/assignments/{lease}/submit/",
            {"idempotency_key": "k1", **payload},
            format="json",
        )

    def test_a_listwise_ranking_holding_an_object(self, api, annotator):
        project = ProjectFactory(task_type="listwise")
        MembershipFactory(project=project, user=annotator)
        ItemFactory(project=project, candidates=["a", "b", "c"])
        lease = api(annotator).post(f"/api/v1/projects/{project.pk}/next/").json()["assignment"]
        response = self.submit(api, annotator, lease, ranking=[{"x": 1}, "B", "C"])
        assert_error_shape(response)
        response = self.submit(api, annotator, lease, ranking=[["A", {"x": 1}], "B", "C"])
        assert_error_shape(response)
        assert not Annotation.objects.exists()

    def test_a_rationale_past_the_limit(self, api, annotator, lease, settings):
        settings.TANDEM_MAX_RATIONALE_CHARS = 10
        response = self.submit(api, annotator, lease, choice="A", rationale="x" * 11)
        assert "longer than 10" in json.dumps(assert_error_shape(response))
        assert not Annotation.objects.exists()

    def test_nul_in_a_rationale(self, api, annotator, lease):
        assert_error_shape(self.submit(api, annotator, lease, choice="A", rationale="a\u0000"))

    def test_a_huge_time_spent(self, api, annotator, lease):
        assert_error_shape(self.submit(api, annotator, lease, choice="A", time_spent_ms=10**30))

    def test_a_superscript_digit_in_the_workspace_form(self, client, project, annotator):
        ItemFactory(project=project)
        client.force_login(annotator)
        client.post(f"/projects/{project.pk}/work/next/")
        from annotation.models import Assignment

        lease = Assignment.objects.get(annotator=annotator)
        url = f"/projects/{project.pk}/work/{lease.pk}/submit/"
        response = client.post(url, {"verdict": "L:²", "idempotency_key": "k1"})
        assert response.status_code == 422 and b"Unknown strength" in response.content
        response = client.post(
            url, {"verdict": "L", "idempotency_key": "k2", "time_spent_ms": "²" * 3}
        )
        assert response.status_code == 200
        response = client.post(url, {"verdict": "L", "idempotency_key": "k\x003"})
        assert response.status_code in (200, 422)
        assert Annotation.objects.count() == 1
