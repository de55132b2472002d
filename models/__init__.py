"""pairsift.models: pure torch/numpy/scipy models (no Beam)."""
