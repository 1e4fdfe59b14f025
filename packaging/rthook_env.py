"""PyInstaller runtime hook: give child processes the environment minipaas was started with.

A onefile bootloader prepends its private extraction dir to LD_LIBRARY_PATH (keeping the old
value in LD_LIBRARY_PATH_ORIG). The dynamic loader of this process has already read it, so
restoring it here changes nothing for minipaas itself, but it keeps git, caddy, ssh, bwrap and the
apps' own processes from loading the bundle's copies of libssl, libz or libsqlite.
"""

import os

_orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
if _orig is not None:
    os.environ["LD_LIBRARY_PATH"] = _orig
else:
    os.environ.pop("LD_LIBRARY_PATH", None)
