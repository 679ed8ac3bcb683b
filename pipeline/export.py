"""`python -m pipeline.export ...`: the mobile export lives in the mobile_export package; this is its entry point."""

import sys

from mobile_export.cli import main

if __name__ == "__main__":
    sys.exit(main())
