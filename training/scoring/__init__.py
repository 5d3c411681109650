"""Portfolio scoring: books read and written by rank, drift against training, the scoring driver."""
