-- Metrics as bounded time series (see minipaas/store/metrics.py). Every table keeps two tiers
-- told apart by `res`, the seconds one point covers: raw samples (the sampling interval, 5 s,
-- kept for an hour) and minute roll-ups (res = 60, kept for a day). Rows of an app go with it.
CREATE TABLE dyno_samples (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    dyno TEXT NOT NULL,                 -- "web.1"
    res INTEGER NOT NULL,
    t REAL NOT NULL,                    -- unix time of the sample (start of the minute for roll-ups)
    cpu REAL,                           -- % of one core, summed over the dyno's process tree
    rss INTEGER NOT NULL                -- bytes, summed over the tree
);
CREATE INDEX dyno_samples_app ON dyno_samples (app_id, res, t);
CREATE INDEX dyno_samples_time ON dyno_samples (res, t);

CREATE TABLE router_samples (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    res INTEGER NOT NULL,
    t REAL NOT NULL,
    requests INTEGER NOT NULL,          -- requests in the interval (weights the roll-up)
    rps REAL NOT NULL,
    p50 REAL,                           -- response time percentiles in ms, NULL without requests
    p95 REAL,
    p99 REAL,
    r4xx REAL NOT NULL,                 -- 4xx answers per second
    r5xx REAL NOT NULL
);
CREATE INDEX router_samples_app ON router_samples (app_id, res, t);
CREATE INDEX router_samples_time ON router_samples (res, t);

CREATE TABLE host_samples (
    res INTEGER NOT NULL,
    t REAL NOT NULL,
    cpu REAL,                           -- % of all cores
    mem_used INTEGER NOT NULL,
    mem_total INTEGER NOT NULL,
    disk_used INTEGER NOT NULL,         -- the data dir's file system
    disk_total INTEGER NOT NULL
);
CREATE INDEX host_samples_time ON host_samples (res, t);
