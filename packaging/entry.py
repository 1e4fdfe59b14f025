"""The frozen `minipaas` binary's entry point (PyInstaller runs this file as `__main__`).

It only hands over to `minipaas.cli.main`, so the binary behaves exactly like the installed
`minipaas` console script; nothing else happens here.
"""

import sys

from minipaas.cli import main

if __name__ == "__main__":
    sys.exit(main())
