import sys

from brachymc.cli import main

sys.exit(main())
