import sys

from gsam_repro.cli import main

sys.exit(main())
