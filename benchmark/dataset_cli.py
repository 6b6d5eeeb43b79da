"""``python -m benchmark.dataset_cli prepare|bench ...``: the same as ``python -m datasets ...``, for environments
where Hugging Face ``datasets`` is installed (there ``python -m datasets`` runs theirs)."""

import sys

from mmbalance_datasets._cli import main

if __name__ == "__main__":
    sys.exit(main())
