import sys

from powrd.cli.main import main

sys.exit(main())
