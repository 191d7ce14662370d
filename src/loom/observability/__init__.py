"""Metrics, traces and logs: what an operator sees of a running Loom.

Nothing here imports from `loom.api`, so the engine, the inference providers, the tools and
the store can all report through it. Each hook runs once per request, turn, model call,
tool call or database operation; none runs per streamed chunk or event.
"""
