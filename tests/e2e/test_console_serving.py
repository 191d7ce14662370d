"""The console's pages and assets over plain HTTP (no browser needed): served by Loom from
package data, public, with a policy that lets the page talk to Loom alone, and with no
reference to any other host in any asset."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import loom.console

STATIC = Path(loom.console.__file__).parent / "static"
PAGES = [
    "/console/responses",
    "/console/responses/resp_123",
    "/console/conversations",
    "/console/conversations/conv_123",
    "/console/playground",
    "/console/files",
    "/console/live",
]


@pytest.fixture
def web(loom_server):
    with httpx.Client(base_url=loom_server.url, trust_env=False) as client:
        yield client


@pytest.mark.parametrize("path", PAGES)
def test_page_is_served_with_a_same_origin_policy(web, path):
    answer = web.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', answer.text)
    assert len(scripts) == 1 and scripts[0].startswith("/console/static/")
    assert web.get(scripts[0]).status_code == 200


def test_console_root_redirects_to_responses(web):
    answer = web.get("/console")
    assert answer.status_code == 307 and answer.headers["location"] == "/console/responses"


def test_no_asset_names_another_host():
    assets = sorted(STATIC.iterdir())
    assert {p.suffix for p in assets} == {".js", ".css"}
    for asset in assets:
        text = asset.read_text(encoding="utf-8")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text), asset.name


def test_unknown_asset_is_a_404_in_the_api_error_shape(web):
    answer = web.get("/console/static/nope.js")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
