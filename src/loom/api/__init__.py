"""HTTP routes: one thin module per resource, plus the SSE writer."""
