"""`python -m search.cli` = `alexsearch`."""

import sys

from search.cli import main

sys.exit(main())
