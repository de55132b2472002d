"""pairsift."""
