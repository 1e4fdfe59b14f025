"""Log drains: copies of each app's log lines sent to syslog or HTTPS receivers, as Heroku's
`drains:add` does (see `minipaas.drains.url` for the formats, `.forwarder` for the delivery)."""

from minipaas.drains.forwarder import Drains, DrainSpec, DrainStatus
from minipaas.drains.url import DrainUrl, parse_drain_url, redacted, syslog_frame

__all__ = [
    "DrainSpec", "DrainStatus", "DrainUrl", "Drains", "parse_drain_url", "redacted",
    "syslog_frame",
]
