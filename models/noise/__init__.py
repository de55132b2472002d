"""Noise modelling on per-pair scores: histograms, beta/Gaussian mixtures, the empirical null,
evidential opinions, neighbour consistency, and the clean/hard/noisy division."""
