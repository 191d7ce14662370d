"""Tools the model can call: client-side functions and server-side tools (MCP, ...)."""
