"""mmbalance-bench: modality-imbalance methods, one harness, the paper's tables."""

from benchmark.dataset_package import install as _install_dataset_package

_install_dataset_package()  # `import mmbalance_datasets` = the suite's datasets/ folder (Hugging Face keeps `datasets`)

__version__ = "0.1.0"
