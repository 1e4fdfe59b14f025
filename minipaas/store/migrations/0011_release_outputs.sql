-- The output of a release's release phase (`releases:output vN`). The logs keep it too, with
-- source `release`, but by one-off dyno name (release.1) and not by release version, and they
-- are pruned: this row ties the lines to their release for as long as the release is kept.
-- No row: the release had no release phase (a config change, a rollback, no `release:` type).
CREATE TABLE release_outputs (
    release_id INTEGER PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
    output TEXT NOT NULL,                   -- its lines, "\n"-joined (the newest 1 MiB)
    exit_code INTEGER,                      -- NULL: killed at its timeout
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL
);
