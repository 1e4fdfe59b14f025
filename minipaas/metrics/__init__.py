"""Metrics: dyno CPU/RSS from /proc, router throughput/latency/errors from Caddy's access log,
host CPU/memory/disk, sampled into bounded time series without blocking the loop.

`Metrics` (service.py) is what the server runs; the samplers and parsers are its parts. This
package never imports the store or the supervisor: it is handed a sink and callables.
"""

from minipaas.metrics.access import (
    AccessLogTail,
    HostMap,
    RouterSample,
    app_stats,
    parse_lines,
)
from minipaas.metrics.cli_view import render_metrics
from minipaas.metrics.dynos import DynoSample, DynoSampler
from minipaas.metrics.host import HostSample, HostSampler
from minipaas.metrics.prometheus import CONTENT_TYPE, render_prometheus
from minipaas.metrics.service import MAX_SINCE, Metrics, MetricsSink

__all__ = [
    "CONTENT_TYPE",
    "MAX_SINCE",
    "AccessLogTail",
    "DynoSample",
    "DynoSampler",
    "HostMap",
    "HostSample",
    "HostSampler",
    "Metrics",
    "MetricsSink",
    "RouterSample",
    "app_stats",
    "parse_lines",
    "render_metrics",
    "render_prometheus",
]
