"""minipaas: Heroku for one server.

The package holds the control plane (`server`), the `minipaas` command (`cli`) and the parts the
server composes. Importing it does nothing: no I/O, no state, no threads.
"""

__version__ = "0.1.0"
