"""Production safety: who is calling (API keys), how much they may ask for (limits), and
where a request may make Loom connect (the MCP URL guard).

Nothing here imports from `loom.api`; the ASGI middleware in `middleware.py` is installed
by `app.py`, and the engine and tools call the checks directly.
"""
