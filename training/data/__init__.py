"""Data: feature schema, loaders, the synthetic SME generator, splits and preprocessing."""
