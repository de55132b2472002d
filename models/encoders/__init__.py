"""Frozen towers behind one factory: open_clip, transformers CLIP/SigLIP, composed offline towers."""
