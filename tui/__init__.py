"""The Textual terminal UI (issue 4): talks to a server only through `minipaas.client`."""
