-- Dynos are keyed by pid, not by name: while a deploy or restart rolls, the new web.1 runs next
-- to the old web.1 and both are recorded (a restart of minipaas then adopts both).
CREATE TABLE dynos_by_pid (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    process_type TEXT NOT NULL,
    release INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    port INTEGER,
    started_at REAL,
    state TEXT NOT NULL,
    start_ticks INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, pid)
);
INSERT INTO dynos_by_pid (app_id, name, process_type, release, pid, port, started_at, state,
                          start_ticks, restarts)
    SELECT app_id, name, process_type, release, pid, port, started_at, state, start_ticks, restarts
    FROM dynos WHERE pid IS NOT NULL;
DROP TABLE dynos;
ALTER TABLE dynos_by_pid RENAME TO dynos;
