"""pairsift benchmarks and dataset builders: measured figures, kept apart from the product."""
