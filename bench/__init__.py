"""minipaas's benchmark harness (issue 6): `python -m bench [--quick] [--json FILE] [--only …]`.

Owns: starting a throwaway `minipaas server`, the scenarios, the load generator and the report.
Must not touch: the `minipaas` package's code or any real data dir; it only drives a server
through its CLI, git over HTTPS and HTTP through Caddy. Importing it does nothing.
"""
