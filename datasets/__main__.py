import sys

import benchmark  # noqa: F401  (makes mmbalance_datasets importable)
from mmbalance_datasets._cli import main

sys.exit(main())
