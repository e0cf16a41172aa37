"""``python -m lanmsff.analysis``: runs the comparison report's command line, :func:`lanmsff.analysis.cli.main`."""

import sys

from lanmsff.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
