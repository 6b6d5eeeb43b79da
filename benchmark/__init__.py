"""mmbalance-bench: modality-imbalance methods, one harness, the paper's tables."""

__version__ = "0.1.0"
