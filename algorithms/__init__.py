"""The optimization side: compressors, error feedback, SGD modes, models and datasets."""
