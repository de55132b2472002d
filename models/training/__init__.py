"""Projection heads, losses, the robust trainer, scoring state and the retrieval model."""
