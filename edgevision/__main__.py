import sys

from edgevision.cli import main

sys.exit(main())
