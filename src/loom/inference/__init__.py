"""Model backends: the Provider protocol, its implementations, and the model registry."""
