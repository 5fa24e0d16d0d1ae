"""Candidates' lengths for the quality page's length bias (annotation/quality.py).

``text_bytes`` is a stored generated column (``OCTET_LENGTH(text)``): adding it computes it for
every existing candidate (the table is rewritten once), and the database computes it on every
later write, the importer's COPY included. On PostgreSQL a covering index
``(item_id, position) INCLUDE (text_bytes)`` lets the page read every item's lengths by an
index-only scan instead of the candidates' texts. The model does not declare that index (SQLite,
the embedded shape, has no INCLUDE); only the quality read uses it.
"""

from django.db import migrations, models

import annotation.models

INDEX = "candidate_item_text_bytes"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON annotation_candidate "
            "(item_id, position) INCLUDE (text_bytes)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0007_merge_console")]

    operations = [
        migrations.AddField(
            model_name="candidate",
            name="text_bytes",
            field=models.GeneratedField(
                db_persist=True,
                expression=annotation.models.OctetLength("text"),
                output_field=models.PositiveIntegerField(),
            ),
        ),
        migrations.RunPython(create_index, drop_index),
    ]
