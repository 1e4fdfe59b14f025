"""The Redis add-on (`addons:create heroku-redis`): one `redis-server` of minipaas's own per app.

`RedisServers` owns `<data-dir>/redis`: for each app with the add-on a dir with a generated
config, a server running as the `redis` system user (as the server's own user without root),
adopted across restarts of minipaas, restarted if it dies and stopped on `down`. It never reads
the store or config vars: the deployer decides which app gets one and hands out REDIS_URL.
"""

from minipaas.redis.servers import (
    POLICIES,
    SERVICE,
    Instance,
    RedisInfo,
    RedisServers,
    check_policy,
    find_executable,
    parse_info,
    password_of,
    render_config,
    service_name,
    stop_orphans,
)

__all__ = [
    "POLICIES",
    "SERVICE",
    "Instance",
    "RedisInfo",
    "RedisServers",
    "check_policy",
    "find_executable",
    "parse_info",
    "password_of",
    "render_config",
    "service_name",
    "stop_orphans",
]
