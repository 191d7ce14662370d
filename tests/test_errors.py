"""The one error vocabulary: OpenAI's error body and the `param` that names a field."""

from __future__ import annotations

import pytest

from loom.errors import NotFoundError, error_body, invalid_value, param_of


def test_error_body_has_openai_shape():
    assert error_body("bad", "invalid_request_error", "input", "invalid_value") == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_value",
        }
    }
    assert NotFoundError("gone", param="id").to_dict() == error_body(
        "gone", "invalid_request_error", "id", "not_found"
    )


@pytest.mark.parametrize(
    ("loc", "prefix", "param"),
    [
        (("input", 0, "content"), "", "input[0].content"),
        (("body", "tools", 2, "name"), "", "tools[2].name"),
        (("input", "list[any]", 1, "role"), "", "input[1].role"),
        (("content", 0, "ResponseInputText", "text"), "items[3]", "items[3].content[0].text"),
        (("metadata", "function-after[_metadata_limits(), dict[str,str]]"), "", "metadata"),
        ((), "", None),
        ((), "items[0]", "items[0]"),
    ],
)
def test_param_of_renders_a_pydantic_location_as_openai_does(loc, prefix, param):
    assert param_of(loc, prefix) == param


def test_invalid_value_names_the_field():
    err = invalid_value("tools[0].server_url", "'tools[0].server_url' must be an http(s) URL.")
    assert (err.status_code, err.param, err.code) == (400, "tools[0].server_url", "invalid_value")
