"""The API's JSON parser: orjson (no recursion into Python's stack, so a body nested 100,000 deep
is a parse error, not a crash), a size cap, and ``tandem.inputs.check_json`` on what it read."""

from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from .inputs import UnsafeInput, check_json


class JSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer
    # Refuse NUL and lone surrogates anywhere. The import endpoint turns it off: its rows are
    # checked one by one, so that each bad row is reported with its line.
    check_text = True
    check_depth = True

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(body) > limit:
            raise ParseError(f"JSON body larger than {limit:,} bytes")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            if self.check_depth or self.check_text:
                check_json(
                    value,
                    max_depth=settings.TANDEM_MAX_JSON_DEPTH if self.check_depth else 1 << 30,
                    text=self.check_text,
                )
        except UnsafeInput as exc:
            raise ParseError(str(exc)) from None
        return value


class RowsJSONParser(JSONParser):
    """For bodies of rows that the importer checks row by row (text and depth), so that each bad
    row is reported with its line. orjson's own limit (1,024 levels) still stops a body from
    nesting deeper than any code here could walk."""

    check_text = False
    check_depth = False
