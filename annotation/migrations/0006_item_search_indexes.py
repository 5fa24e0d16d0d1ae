"""Full-text search of items (annotation/item_browser.py): GIN expression indexes over the
prompt and the candidates' texts. PostgreSQL only; SQLite searches with ``icontains``.

Expression indexes are kept by PostgreSQL on every write path, COPY included.
"""

from django.db import migrations

INDEXES = [
    (
        "item_prompt_fts",
        "annotation_item",
        "to_tsvector('english'::regconfig, prompt)",
    ),
    (
        "candidate_text_fts",
        "annotation_candidate",
        "to_tsvector('english'::regconfig, text)",
    ),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, expression in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0005_importjob_preference_source_none")]

    operations = [migrations.RunPython(create, drop)]
