"""pairsift.transforms: Beam PTransforms and DoFns, one file per stage."""
