"""``python -m ebseg_lite.cli ...`` (what torchrun runs)."""
import sys

from ebseg_lite.cli.main import main

sys.exit(main())
