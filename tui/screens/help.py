"""The help screen: every key, by screen. Opened with `?` or F1 from anywhere.

Owns: the keyboard reference text. Must not touch: I/O.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
minipaas — keys (the footer shows the ones that work right now; the mouse works too)

Everywhere
  ?  F1      this help                 Esc      back / close
  Ctrl+P     command palette           q        quit (from the apps list)

Apps
  ↑ ↓  Enter open the app              l / m    its logs / metrics
  h          host CPU, memory, disk    r        refresh now

App
  1 … 6      dynos / releases / config / domains / add-ons / drains
  + / -      scale the selected process type up / down by one
  n          set the selected type's count    r / R   restart the type / all dynos
  M          maintenance mode on / off        l / m   logs / metrics
  b          roll back to the selected release (asks first)
  v          reveal / hide config values      s       set KEY=VALUE    u   unset (asks first)
  a          add a domain / a log drain       x / Del remove one (asks first)
  Add-ons    no keys: create and destroy them with the CLI
             minipaas addons:create heroku-postgresql -a APP
             minipaas addons:destroy heroku-postgresql -a APP --confirm APP

Logs
  space      pause / resume            /        search (Enter keeps, Esc clears)
  s          source: all, app, router, build, release, minipaas
  d          dyno: all, then each dyno c  clear   End  follow the newest lines

Metrics
  the last hour: throughput, response time, errors, CPU and memory; refreshed every 5 s

Host
  the server's CPU, memory and data-dir disk over the last hour; r refreshes now
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,f1,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(HELP, markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
