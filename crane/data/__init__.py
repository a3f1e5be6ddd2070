"""Data layer: raw sources -> parsed interactions -> k-core -> dense ids -> split."""
