-- Backups of add-on databases (pg:backups:capture, and the daily ones of pg:backups:schedule).
-- The dumps themselves are files (<data-dir>/backups/<app>/b001.dump); a row says what each
-- one is. Numbers are per app and never reused (backup_numbers keeps the last one given), so
-- `b003` always means the same dump, as on Heroku.
CREATE TABLE backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,                -- b001 is 1
    kind TEXT NOT NULL,                     -- manual | scheduled
    status TEXT NOT NULL,                   -- running | completed | failed
    error TEXT,                             -- why it failed
    size INTEGER,                           -- bytes of the dump, once completed
    created_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (app_id, number)
);
CREATE TABLE backup_numbers (
    app_id INTEGER PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    last INTEGER NOT NULL
);
-- pg:backups:schedule: one daily capture per app, at `at` (HH:MM, UTC).
CREATE TABLE backup_schedules (
    app_id INTEGER PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    created_at REAL NOT NULL
);
