"""The Responses engine: request → context → agent loop → events → final Response."""
