-- Operations: stopped process types (ps:stop/ps:start) and HTTP health checks (checks:set).
ALTER TABLE formation ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE app_checks (
    app_id INTEGER PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    path TEXT,                       -- GET this path; NULL = the port accepting connections is enough
    expect TEXT,                     -- a substring the body must contain
    min_uptime REAL NOT NULL DEFAULT 0,
    timeout REAL                     -- seconds a new dyno may take to pass; NULL = the server default
);

-- What a release takes from app.json beyond the build: health checks and cron jobs (JSON).
ALTER TABLE releases ADD COLUMN app_json TEXT NOT NULL DEFAULT '{}';
