"""``python -m nctransfer``: the ``nctransfer`` command (also what ``torchrun -m nctransfer ...`` launches)."""

import sys

from nctransfer.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
