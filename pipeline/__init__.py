"""pairsift.pipeline: Beam graph, options, CLI, IO and run orchestration."""
