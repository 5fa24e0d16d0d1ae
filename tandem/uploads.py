"""Upload size cap. Django's own handlers keep small files in memory and stream big ones to a
temporary file (FILE_UPLOAD_MAX_MEMORY_SIZE); this one, first in FILE_UPLOAD_HANDLERS, stops a
request whose files pass TANDEM_MAX_UPLOAD_BYTES, before more of it is read."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParserError


class UploadTooLarge(MultiPartParserError, RequestDataTooBig):
    """DRF's multipart parser turns this into a 400 ParseError; Django, under an HTML view, into
    its 400 page (RequestDataTooBig is a SuspiciousOperation)."""


class SizeLimitUploadHandler(FileUploadHandler):
    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.received = 0
        limit = settings.TANDEM_MAX_UPLOAD_BYTES
        if content_length and content_length > limit + 64 * 1024:  # room for the form's fields
            raise UploadTooLarge(_message(limit))
        return None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.TANDEM_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(_message(settings.TANDEM_MAX_UPLOAD_BYTES))
        return raw_data

    def file_complete(self, file_size: int):
        return None


def _message(limit: int) -> str:
    return f"the upload is larger than the limit of {limit:,} bytes (TANDEM_MAX_UPLOAD_BYTES)"
