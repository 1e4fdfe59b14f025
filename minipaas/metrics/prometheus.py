"""The latest sampling round in Prometheus' text exposition format (version 0.0.4). Pure.

Every metric is a gauge of the last round; values still unknown (CPU on the first round,
latency without requests) are left out rather than reported as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from minipaas.metrics.access import RouterSample
from minipaas.metrics.dynos import DynoSample
from minipaas.metrics.host import HostSample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass
class _Family:
    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | None, **labels: str) -> None:
        if value is not None:
            self.samples.append((labels, value))

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, value in self.samples:
            text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
            yield (
                f"{self.name}{{{text}}} {_number(value)}"
                if text
                else (f"{self.name} {_number(value)}")
            )


def render_prometheus(
    dynos: Iterable[DynoSample],
    routers: Mapping[str, RouterSample],
    host: HostSample | None,
    sample_seconds: float | None = None,
) -> str:
    cpu = _Family("minipaas_dyno_cpu_percent", "CPU use of the dyno's process tree, % of one core.")
    rss = _Family("minipaas_dyno_rss_bytes", "Resident memory of the dyno's process tree.")
    for d in sorted(dynos, key=lambda d: (d.app, d.dyno)):
        cpu.add(d.cpu, app=d.app, dyno=d.dyno)
        rss.add(d.rss, app=d.app, dyno=d.dyno)
    rps = _Family("minipaas_app_requests_per_second", "Requests the router passed to the app.")
    latency = _Family("minipaas_app_response_time_ms", "Response time percentiles at the router.")
    errors = _Family("minipaas_app_http_errors_per_second", "4xx and 5xx answers per second.")
    for app in sorted(routers):
        s = routers[app]
        rps.add(s.rps, app=app)
        for q, value in (("0.5", s.p50), ("0.95", s.p95), ("0.99", s.p99)):
            latency.add(value, app=app, quantile=q)
        errors.add(s.r4xx, app=app, **{"class": "4xx"})
        errors.add(s.r5xx, app=app, **{"class": "5xx"})
    families = [cpu, rss, rps, latency, errors]
    if host is not None:
        host_cpu = _Family("minipaas_host_cpu_percent", "CPU use of the host, % of all cores.")
        host_cpu.add(host.cpu)
        mem_used = _Family("minipaas_host_memory_used_bytes", "Memory in use (total - available).")
        mem_used.add(host.mem_used)
        mem_total = _Family("minipaas_host_memory_total_bytes", "Memory of the host.")
        mem_total.add(host.mem_total)
        disk_used = _Family("minipaas_host_disk_used_bytes", "Used space on the data dir's disk.")
        disk_used.add(host.disk_used)
        disk_total = _Family("minipaas_host_disk_total_bytes", "Size of the data dir's disk.")
        disk_total.add(host.disk_total)
        families += [host_cpu, mem_used, mem_total, disk_used, disk_total]
    cost = _Family("minipaas_metrics_sample_cpu_seconds", "CPU time the last sampling round took.")
    cost.add(sample_seconds)
    families.append(cost)
    return "".join(line + "\n" for family in families for line in family.lines())
