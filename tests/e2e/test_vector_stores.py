"""Files, vector stores and search end to end: the `openai` SDK against Loom under uvicorn,
on SQLite and on the real PostgreSQL, with the bundled embedding model doing the work."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types import FileObject, VectorStore
from openai.types.vector_store_search_response import VectorStoreSearchResponse
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch
from openai.types.vector_stores.file_content_response import FileContentResponse

from tests.conftest import run_loom
from tests.support.pdf import text_pdf
from tests.support.pg import pg_database

UPLOAD_LIMIT = 64 * 1024
BODY_LIMIT = 16 * 1024  # for other requests; an upload's file has UPLOAD_LIMIT

DOCS = {
    "bank": (
        "The central bank raised interest rates again to fight persistent inflation.",
        {"category": "finance", "year": 2021, "region": "eu", "public": True},
    ),
    "bonds": (
        "Government bond yields climbed as investors sold treasuries.",
        {"category": "finance", "year": 2023, "region": "us", "public": False},
    ),
    "football": (
        "The football club won the championship final after extra time.",
        {"category": "sports", "year": 2022, "region": "eu"},
    ),
    "telescope": (
        "Astronomers used a space telescope to photograph a distant galaxy.",
        {"category": "science", "year": 2024, "region": "asia", "public": True},
    ),
    "marathon": (
        "Thousands of runners finished the city marathon despite the heat.",
        {"category": "sports", "year": 2020, "region": "us"},
    ),
    "recipe": ("Whisk the eggs with sugar, then fold in the flour gently.", None),
}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def loom(request, loom_env, tmp_path_factory) -> Iterator[str]:
    env = {
        **loom_env,
        "LOOM_FILES_DIR": str(tmp_path_factory.mktemp("files")),
        "LOOM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "LOOM_MAX_BODY_BYTES": str(BODY_LIMIT),
    }
    if request.param == "sqlite":
        env["LOOM_DB_URL"] = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'loom.db'}"
        with run_loom(env) as server:
            yield server.url
    else:
        with pg_database() as url, run_loom({**env, "LOOM_DB_URL": url}) as server:
            yield server.url


@pytest.fixture(scope="module")
def client(loom) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{loom}/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def http(loom) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{loom}/v1", timeout=30) as c:
        yield c


def wait_until_done(client: openai.OpenAI, store_id: str, file_ids: list[str]) -> dict:
    """Poll the API (with a deadline) until no file is in progress; return id -> file."""
    deadline = time.monotonic() + 120
    while True:
        files = {
            f: client.vector_stores.files.retrieve(vector_store_id=store_id, file_id=f)
            for f in file_ids
        }
        if all(f.status != "in_progress" for f in files.values()):
            return files
        if time.monotonic() > deadline:
            raise AssertionError(f"ingestion did not finish: {files}")


@pytest.fixture(scope="module")
def corpus(client, http) -> dict:
    """One store with the six documents attached with their attributes, all completed."""
    ids = {}
    for name, (text, _) in DOCS.items():
        uploaded = client.files.create(file=(f"{name}.txt", text.encode()), purpose="assistants")
        ids[name] = uploaded.id
    store = client.vector_stores.create(name="corpus")
    for name, (_, attributes) in DOCS.items():
        attached = client.vector_stores.files.create(
            vector_store_id=store.id, file_id=ids[name], attributes=attributes
        )
        assert attached.status in ("in_progress", "completed")
    done = wait_until_done(client, store.id, list(ids.values()))
    assert {f.status for f in done.values()} == {"completed"}
    return {"store": store.id, "ids": ids, "names": {v: k for k, v in ids.items()}}


def search_names(http: httpx.Client, corpus: dict, filters: dict, query="news report") -> set:
    answer = http.post(
        f"/vector_stores/{corpus['store']}/search",
        json={"query": query, "filters": filters, "max_num_results": 50},
    )
    assert answer.status_code == 200, answer.text
    return {corpus["names"][hit["file_id"]] for hit in answer.json()["data"]}


def test_objects_validate_against_sdk_types(client, http, corpus):
    store_id = corpus["store"]
    file_id = corpus["ids"]["bank"]
    FileObject.model_validate(http.get(f"/files/{file_id}").json())
    store = VectorStore.model_validate(http.get(f"/vector_stores/{store_id}").json())
    assert store.file_counts.completed == 6 and store.file_counts.total == 6
    assert store.status == "completed" and store.usage_bytes > 0
    attached = http.get(f"/vector_stores/{store_id}/files/{file_id}").json()
    VectorStoreFile.model_validate(attached)
    assert attached["attributes"] == DOCS["bank"][1]  # ints stay ints, bools bools
    assert attached["chunking_strategy"] == {
        "type": "static",
        "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
    }
    page = http.post(f"/vector_stores/{store_id}/search", json={"query": "rates"}).json()
    assert page["object"] == "vector_store.search_results.page"
    for hit in page["data"]:
        VectorStoreSearchResponse.model_validate(hit)
    content = http.get(f"/vector_stores/{store_id}/files/{file_id}/content").json()
    assert [FileContentResponse.model_validate(c).text for c in content["data"]] == [
        DOCS["bank"][0]
    ]
    assert client.files.content(file_id).read() == DOCS["bank"][0].encode()


def test_obvious_document_ranks_first(client, corpus):
    page = client.vector_stores.search(
        vector_store_id=corpus["store"], query="What did the central bank do about inflation?"
    )
    scores = [hit.score for hit in page.data]
    assert corpus["names"][page.data[0].file_id] == "bank"
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    page = client.vector_stores.search(
        vector_store_id=corpus["store"], query=["galaxy photographs", "astronomy"]
    )
    assert corpus["names"][page.data[0].file_id] == "telescope"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "eq", "key": "category", "value": "finance"}, {"bank", "bonds"}),
        (
            {"type": "ne", "key": "category", "value": "finance"},
            {"football", "telescope", "marathon", "recipe"},
        ),
        ({"type": "gt", "key": "year", "value": 2021}, {"bonds", "football", "telescope"}),
        (
            {"type": "gte", "key": "year", "value": 2021},
            {"bank", "bonds", "football", "telescope"},
        ),
        ({"type": "lt", "key": "year", "value": 2022}, {"bank", "marathon"}),
        ({"type": "lte", "key": "year", "value": 2022}, {"bank", "football", "marathon"}),
        (
            {"type": "in", "key": "region", "value": ["eu", "asia"]},
            {"bank", "football", "telescope"},
        ),
        (
            {"type": "nin", "key": "region", "value": ["eu", "asia"]},
            {"bonds", "marathon", "recipe"},
        ),
        ({"type": "eq", "key": "public", "value": True}, {"bank", "telescope"}),
        ({"type": "eq", "key": "year", "value": "2021"}, set()),  # a string is not a number
        (  # strings order as text: "eu" <= "us", "asia" < "eu"
            {"type": "gte", "key": "region", "value": "eu"},
            {"bank", "bonds", "football", "marathon"},
        ),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "in", "key": "category", "value": ["finance", "sports"]},
                    {
                        "type": "or",
                        "filters": [
                            {"type": "eq", "key": "region", "value": "eu"},
                            {"type": "gte", "key": "year", "value": 2023},
                        ],
                    },
                ],
            },
            {"bank", "bonds", "football"},
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "category", "value": "science"},
                    {
                        "type": "and",
                        "filters": [
                            {"type": "eq", "key": "category", "value": "sports"},
                            {"type": "lt", "key": "year", "value": 2021},
                        ],
                    },
                ],
            },
            {"telescope", "marathon"},
        ),
    ],
    ids=lambda v: v.get("type") if isinstance(v, dict) else None,
)
def test_filters_decide_membership_exactly(http, corpus, filters, expected):
    assert search_names(http, corpus, filters) == expected


def test_filters_hold_whatever_the_ranking(http, corpus):
    # The best match for this query is excluded by the filter; only sports come back.
    got = search_names(
        http,
        corpus,
        {"type": "eq", "key": "category", "value": "sports"},
        query="central bank interest rates inflation",
    )
    assert got == {"football", "marathon"}


def test_score_threshold_and_max_results(client, corpus):
    every = client.vector_stores.search(
        vector_store_id=corpus["store"], query="football championship", max_num_results=50
    )
    assert len(every.data) == 6
    top = client.vector_stores.search(
        vector_store_id=corpus["store"], query="football championship", max_num_results=2
    )
    assert [h.file_id for h in top.data] == [h.file_id for h in every.data[:2]]
    cut = every.data[0].score - 1e-6
    only_best = client.vector_stores.search(
        vector_store_id=corpus["store"],
        query="football championship",
        ranking_options={"score_threshold": cut},
    )
    assert [h.file_id for h in only_best.data] == [every.data[0].file_id]


def test_rewrite_query_reports_the_rewritten_query(http, corpus):
    page = http.post(
        f"/vector_stores/{corpus['store']}/search",
        json={"query": "What is the telescope photographing?", "rewrite_query": True},
    ).json()
    assert page["search_query"] == ["telescope photographing"]
    assert corpus["names"][page["data"][0]["file_id"]] == "telescope"


def test_update_attributes_changes_filter_membership(client, http, corpus):
    store, file_id = corpus["store"], corpus["ids"]["recipe"]
    filters = {"type": "eq", "key": "category", "value": "cooking"}
    assert search_names(http, corpus, filters) == set()
    updated = client.vector_stores.files.update(
        vector_store_id=store, file_id=file_id, attributes={"category": "cooking"}
    )
    assert updated.attributes == {"category": "cooking"}
    assert search_names(http, corpus, filters) == {"recipe"}
    client.vector_stores.files.update(vector_store_id=store, file_id=file_id, attributes=None)
    assert search_names(http, corpus, filters) == set()


def test_deleted_file_leaves_search_and_every_store(client):
    text = b"Volcanic eruptions release ash and sulfur dioxide into the stratosphere."
    doomed = client.files.create(file=("volcano.txt", text), purpose="assistants")
    first = client.vector_stores.create(name="a", file_ids=[doomed.id])
    second = client.vector_stores.create(name="b", file_ids=[doomed.id])
    for store in (first, second):
        wait_until_done(client, store.id, [doomed.id])
        hits = client.vector_stores.search(vector_store_id=store.id, query="volcanic ash")
        assert [h.file_id for h in hits.data] == [doomed.id]
    deleted = client.files.delete(doomed.id)
    assert deleted.deleted is True
    for store in (first, second):
        assert (
            client.vector_stores.search(vector_store_id=store.id, query="volcanic ash").data == []
        )
        assert client.vector_stores.files.list(vector_store_id=store.id).data == []
        counts = client.vector_stores.retrieve(store.id).file_counts
        assert (counts.total, counts.completed) == (0, 0)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(doomed.id)


def test_detaching_a_file_removes_it_from_that_store_only(client):
    text = b"Honeybees communicate the direction of flowers with a waggle dance."
    bee = client.files.create(file=("bees.txt", text), purpose="assistants")
    store = client.vector_stores.create(name="bees", file_ids=[bee.id])
    wait_until_done(client, store.id, [bee.id])
    gone = client.vector_stores.files.delete(vector_store_id=store.id, file_id=bee.id)
    assert gone.deleted is True
    assert client.vector_stores.search(vector_store_id=store.id, query="waggle dance").data == []
    assert client.files.retrieve(bee.id).id == bee.id


def test_pdf_is_ingested_and_a_broken_file_fails_alone(client):
    pdf = client.files.create(
        file=("plants.pdf", text_pdf("Photosynthesis turns sunlight into chemical energy.")),
        purpose="assistants",
    )
    broken = client.files.create(file=("broken.pdf", b"%PDF-1.4 not really"), purpose="assistants")
    binary = client.files.create(file=("blob.bin", b"\x00\x01\x02\xff" * 64), purpose="assistants")
    store = client.vector_stores.create(name="mixed")
    batch = client.vector_stores.file_batches.create(
        vector_store_id=store.id, file_ids=[pdf.id, broken.id, binary.id]
    )
    VectorStoreFileBatch.model_validate(batch.model_dump())
    done = wait_until_done(client, store.id, [pdf.id, broken.id, binary.id])
    assert done[pdf.id].status == "completed"
    for failed in (broken.id, binary.id):
        assert done[failed].status == "failed"
        assert done[failed].last_error.code == "invalid_file"
        assert done[failed].last_error.message
    batch = client.vector_stores.file_batches.retrieve(vector_store_id=store.id, batch_id=batch.id)
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed) == (1, 2)
    failed_only = client.vector_stores.file_batches.list_files(
        vector_store_id=store.id, batch_id=batch.id, filter="failed"
    )
    assert {f.id for f in failed_only.data} == {broken.id, binary.id}
    hits = client.vector_stores.search(vector_store_id=store.id, query="photosynthesis sunlight")
    assert [h.file_id for h in hits.data] == [pdf.id]
    assert hits.data[0].filename == "plants.pdf"
    assert "Photosynthesis" in hits.data[0].content[0].text


def test_formats_are_read_as_text(client):
    samples = {
        "page.html": b"<html><head><style>p{}</style></head><body><p>Glaciers carve"
        b" <b>valleys</b></p><script>var x;</script></body></html>",
        "notes.md": b"# Tides\n\nThe moon's gravity drives **ocean tides**.",
        "data.json": b'{"animal": "octopus", "arms": 8}',
        "table.csv": b"city,river\nCairo,Nile\nParis,Seine\n",
    }
    uploaded = {
        name: client.files.create(file=(name, data), purpose="assistants").id
        for name, data in samples.items()
    }
    store = client.vector_stores.create(name="formats", file_ids=list(uploaded.values()))
    done = wait_until_done(client, store.id, list(uploaded.values()))
    assert {f.status for f in done.values()} == {"completed"}
    html = client.vector_stores.files.content(
        vector_store_id=store.id, file_id=uploaded["page.html"]
    )
    assert [c.text for c in html.data] == ["Glaciers carve valleys"]
    for query, name in [("octopus arms", "data.json"), ("Seine river Paris", "table.csv")]:
        hits = client.vector_stores.search(vector_store_id=store.id, query=query)
        assert hits.data[0].file_id == uploaded[name]


def test_static_chunking_splits_long_files(client):
    words = " ".join(f"sentence{i} about lighthouses." for i in range(300))
    long_file = client.files.create(file=("long.txt", words.encode()), purpose="assistants")
    store = client.vector_stores.create(name="chunks")
    client.vector_stores.files.create(
        vector_store_id=store.id,
        file_id=long_file.id,
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
        },
    )
    done = wait_until_done(client, store.id, [long_file.id])
    assert done[long_file.id].chunking_strategy.static.max_chunk_size_tokens == 200
    chunks = client.vector_stores.files.content(vector_store_id=store.id, file_id=long_file.id)
    assert len(chunks.data) > 5
    assert chunks.data[0].text.startswith("sentence0 about")
    assert chunks.data[-1].text.endswith("sentence299 about lighthouses.")


def test_file_list_paging_and_purpose(client):
    made = [
        client.files.create(file=(f"p{i}.txt", b"paging"), purpose="user_data").id for i in range(3)
    ]
    listed = client.files.list(purpose="user_data", order="asc", limit=2)
    ids = [f.id for f in listed.data]
    assert ids == made[:2] and listed.has_more
    rest = client.files.list(purpose="user_data", order="asc", after=ids[-1], limit=10)
    assert [f.id for f in rest.data] == made[2:]
    assert all(f.purpose == "assistants" for f in client.files.list(purpose="assistants").data)


def test_file_expiry(client, http):
    made = client.files.create(
        file=("soon.txt", b"expiring"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert made.expires_at == made.created_at + 3600


def test_vector_store_update_list_delete(client):
    store = client.vector_stores.create(
        name="before", metadata={"team": "a"}, expires_after={"anchor": "last_active_at", "days": 2}
    )
    assert store.expires_at == store.last_active_at + 2 * 86400
    updated = client.vector_stores.update(store.id, name="after", metadata={"team": "b"})
    assert (updated.name, updated.metadata) == ("after", {"team": "b"})
    assert store.id in {s.id for s in client.vector_stores.list(limit=100).data}
    assert client.vector_stores.delete(store.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_batch_cancel_marks_pending_files_cancelled(client):
    ids = [
        client.files.create(file=(f"c{i}.txt", b"cancel me " * 50), purpose="assistants").id
        for i in range(8)
    ]
    store = client.vector_stores.create(name="cancel")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
    cancelled = client.vector_stores.file_batches.cancel(
        vector_store_id=store.id, batch_id=batch.id
    )
    assert cancelled.status == "cancelled"
    done = wait_until_done(client, store.id, ids)
    # Whatever finished before the cancel stays; nothing is left in progress.
    assert {f.status for f in done.values()} <= {"completed", "cancelled"}
    counts = client.vector_stores.file_batches.retrieve(
        vector_store_id=store.id, batch_id=batch.id
    ).file_counts
    assert counts.in_progress == 0 and counts.cancelled + counts.completed == 8


def test_local_embedding_model_is_served(client):
    answer = client.embeddings.create(model="local/all-minilm-l6-v2", input=["cat", "kitten"])
    assert [len(d.embedding) for d in answer.data] == [384, 384]
    assert answer.model == "local/all-minilm-l6-v2"


# -- bad input -----------------------------------------------------------------------------


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_upload_without_file_names_the_field(http):
    err = error_of(http.post("/files", data={"purpose": "assistants"}, files={}), 400)
    assert err["param"] == "file"
    err = error_of(http.post("/files", files={"purpose": (None, "assistants")}), 400)
    assert err["param"] == "file"


def test_upload_over_the_limit_is_refused_while_streaming(http, client):
    before = {f.id for f in client.files.list().data}

    def body():  # chunked: no Content-Length, so the limit must hold mid-stream
        boundary = b"xyz"
        yield b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(UPLOAD_LIMIT // 1024 + 8):
            yield b"a" * 1024
        yield b"\r\n--" + boundary + b"--\r\n"

    answer = http.post(
        "/files", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    err = error_of(answer, 413)
    assert err["param"] == "file"
    assert {f.id for f in client.files.list().data} == before


def test_uploads_have_their_own_limit_above_the_body_limit(client, http):
    data = b"x" * (BODY_LIMIT * 3)
    made = client.files.create(file=("large.txt", data), purpose="user_data")
    assert made.bytes == len(data)
    assert client.files.content(made.id).read() == data
    # Other requests keep the general limit.
    answer = http.post("/vector_stores", json={"name": "n" * (BODY_LIMIT + 1)})
    assert answer.status_code == 413


def test_unknown_purpose_names_the_field(http):
    err = error_of(http.post("/files", files={"file": ("a.txt", b"x")}, data={"purpose": "x"}), 400)
    assert err["param"] == "purpose"


def test_unknown_ids_are_404s_naming_the_field(http, corpus):
    store = corpus["store"]
    err = error_of(http.post("/vector_stores/vs_nope/search", json={"query": "x"}), 404)
    assert err["param"] == "vector_store_id"
    err = error_of(http.post(f"/vector_stores/{store}/files", json={"file_id": "file-nope"}), 404)
    assert err["param"] == "file_id"
    err = error_of(http.post("/vector_stores", json={"file_ids": ["file-nope"]}), 404)
    assert err["param"] == "file_ids[0]"
    err = error_of(http.get("/files/file-nope"), 404)
    assert err["param"] == "file_id"
    err = error_of(http.get(f"/vector_stores/{store}/files/file-nope"), 404)
    assert err["param"] == "file_id"
    err = error_of(http.get(f"/vector_stores/{store}/file_batches/vsfb_nope"), 404)
    assert err["param"] == "batch_id"


@pytest.mark.parametrize(
    ("filters", "param"),
    [
        ({"type": "regex", "key": "a", "value": "x"}, "filters.type"),
        ({"type": "and", "filters": [{"type": "bogus"}]}, "filters.filters[0].type"),
        ({"type": "in", "key": "a", "value": "not a list"}, "filters.value"),
        ({"type": "eq", "value": "x"}, "filters.key"),
        ({"type": "or", "filters": []}, "filters.filters"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(http, corpus, filters, param):
    answer = http.post(
        f"/vector_stores/{corpus['store']}/search", json={"query": "x", "filters": filters}
    )
    assert error_of(answer, 400)["param"] == param


def test_other_bad_input_is_400_not_500(http, corpus):
    store = corpus["store"]
    cases = [
        ("/vector_stores", {"embedding_model": "nope/model"}, 404, "embedding_model"),
        ("/vector_stores", {"chunking_strategy": {"type": "weird"}}, 400, "chunking_strategy.type"),
        (f"/vector_stores/{store}/search", {"query": ""}, 400, "query"),
        (f"/vector_stores/{store}/search", {"query": "x", "max_num_results": 0}, 400, None),
        (
            f"/vector_stores/{store}/files",
            {"file_id": corpus["ids"]["bank"], "attributes": {"k": {"nested": 1}}},
            400,
            None,
        ),
        (f"/vector_stores/{store}/file_batches", {}, 400, "file_ids"),
    ]
    for path, body, status, param in cases:
        err = error_of(http.post(path, json=body), status)
        if param is not None:
            assert err["param"] == param, (path, body, err)
        else:
            assert err["param"], (path, body, err)


def test_a_store_can_embed_with_a_provider_model(client, upstream):
    text = b"Penguins huddle together to survive the Antarctic winter."
    penguin = client.files.create(file=("penguins.txt", text), purpose="assistants")
    store = client.vector_stores.create(
        name="remote",
        file_ids=[penguin.id],
        extra_body={"embedding_model": "openai/text-embedding-3-small"},
    )
    assert store.model_extra["embedding_model"] == "openai/text-embedding-3-small"
    done = wait_until_done(client, store.id, [penguin.id])
    assert done[penguin.id].status == "completed"
    hits = client.vector_stores.search(vector_store_id=store.id, query="penguins winter")
    assert [h.file_id for h in hits.data] == [penguin.id]
    sent = [r for r in upstream.requests if "input" in r]
    assert [r["model"] for r in sent] == ["text-embedding-3-small"] * 2
    assert sent[0]["input"] == [text.decode()]
    assert sent[1]["input"] == ["penguins winter"]
