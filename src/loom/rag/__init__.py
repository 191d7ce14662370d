"""Retrieval: files, parsing, chunking, embeddings, ingestion and hybrid search.

Nothing here imports from `loom.api`; the routes and the `file_search` tool call
`loom.rag.retrieval.Retrieval` and the stores in `loom.store`.
"""
