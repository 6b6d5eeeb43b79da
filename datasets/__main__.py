import sys

from datasets._cli import main

sys.exit(main())
