"""`python -m crane` is the `crane` command (what the Snakemake rules call)."""

import sys

from crane.cli import main

sys.exit(main())
