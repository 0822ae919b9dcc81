import sys

from mailflow.cli.main import main

sys.exit(main())
