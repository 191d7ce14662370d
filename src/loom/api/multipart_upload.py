"""Stream a `multipart/form-data` upload to disk, checking the size limit as bytes arrive.

Starlette's form parser would buffer the whole body before the route runs, so neither the
limit nor the memory would be bounded; here `python-multipart`'s push parser is fed the
request stream chunk by chunk, the `file` part goes straight to a file on disk, and the
upload stops with a 413 naming `file` as soon as it passes the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from loom.errors import InvalidRequestError, LoomError, PayloadTooLargeError

_MAX_FIELD_BYTES = 64 * 1024
# What a form may carry beyond its file: the other fields and the multipart framing.
FORM_OVERHEAD = 1024 * 1024


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


async def receive_upload(request: Request, destination: Path, limit: int) -> Upload:
    """Parse the form; the `file` part lands in `destination`. Removes it on any error."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequestError(
            "Uploads must be multipart/form-data with a 'file' part.", param="file"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    upload = Upload()
    state: dict = {"headers": {}, "name": None, "sink": None, "value": bytearray()}
    out: BinaryIO = destination.open("wb")
    too_large = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = state.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value_h"] = state.get("value_h", b"") + data[start:end]

    def on_header_end() -> None:
        state["headers"][state.pop("field", b"").lower()] = state.pop("value_h", b"")

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        if state["name"] == "file":
            raw_name = disposition.get(b"filename")
            upload.filename = raw_name.decode("utf-8", "replace") if raw_name else "upload"
            state["sink"] = "file"
        else:
            state["sink"] = "field"
            state["value"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal too_large
        if state["sink"] == "file":
            upload.size += end - start
            if upload.size > limit:
                too_large = True
                return
            out.write(data[start:end])
        else:
            state["value"] += data[start:end]
            if len(state["value"]) > _MAX_FIELD_BYTES:
                raise InvalidRequestError(
                    f"The form field '{state['name']}' is too long.", param=state["name"]
                )

    def on_part_end() -> None:
        if state["sink"] == "field" and state["name"]:
            upload.fields[state["name"]] = state["value"].decode("utf-8", "replace")
        state.update(headers={}, name=None, sink=None)

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if too_large:
                raise _too_large(limit)
        parser.finalize()
    except LoomError:
        out.close()
        destination.unlink(missing_ok=True)
        raise
    except Exception as exc:  # python-multipart's parse errors
        out.close()
        destination.unlink(missing_ok=True)
        raise InvalidRequestError(f"The multipart body is malformed: {exc}", param="file") from None
    out.close()
    if upload.filename is None:
        destination.unlink(missing_ok=True)
        raise InvalidRequestError("The 'file' part is required.", param="file")
    return upload


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The file is larger than the upload limit of {limit} bytes.",
        param="file",
        code="file_too_large",
    )
