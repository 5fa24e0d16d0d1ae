"""Full-text search of items (annotation/item_browser.py). PostgreSQL only; SQLite searches
with ``icontains``.

Items and candidates get a stored generated column ``search_vector`` =
``to_tsvector('english', prompt)`` / ``to_tsvector('english', text)`` with a GIN index each.
PostgreSQL computes the column on every write path (ORM, bulk_create, COPY), so imports need not
remember it; and, being stored, a query can test it row by row without parsing the text again,
while the planner has its statistics to choose between the index and a walk in id order.
The models do not declare the columns (SQLite has no tsvector); only the browser's SQL reads them.
"""

from django.db import migrations

COLUMNS = [
    ("annotation_item", "prompt", "item_search_vector"),
    ("annotation_candidate", "text", "candidate_search_vector"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, source, index in COLUMNS:
        schema_editor.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search_vector tsvector "
            f"GENERATED ALWAYS AS (to_tsvector('english'::regconfig, {source})) STORED"
        )
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin (search_vector)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _, index in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {index}")
        schema_editor.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0005_importjob_preference_source_none")]

    operations = [migrations.RunPython(create, drop)]
