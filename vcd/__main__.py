import sys

from vcd.cli.main import main

sys.exit(main())
