"""The HTTP API: Starlette routes (JSON and NDJSON streams), token auth and error mapping.

It validates input at the boundary and calls the store (reads) and the deployer (changes); it
never touches files, processes or SQL directly.
"""

from minipaas.api.app import create_app

__all__ = ["create_app"]
