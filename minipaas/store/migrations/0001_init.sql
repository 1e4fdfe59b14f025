-- The first schema: apps and everything hanging off them, plus keys and tokens.
CREATE TABLE apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: the app uid is derived from it
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    current_release INTEGER,               -- version of the release now serving, NULL before the first
    maintenance INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    sha TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    buildpacks TEXT NOT NULL DEFAULT '[]',
    log TEXT NOT NULL DEFAULT '',
    slug TEXT,
    started_at REAL NOT NULL,
    finished_at REAL
);

CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    build_id INTEGER REFERENCES builds(id) ON DELETE SET NULL,
    sha TEXT,
    slug TEXT,
    static_root TEXT,
    config TEXT NOT NULL DEFAULT '{}',          -- JSON snapshot of the config vars
    process_types TEXT NOT NULL DEFAULT '{}',   -- JSON {type: command}
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    UNIQUE (app_id, version)
);

CREATE TABLE config_vars (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
);

CREATE TABLE formation (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    process_type TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (app_id, process_type)
);

CREATE TABLE dynos (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    process_type TEXT NOT NULL,
    release INTEGER NOT NULL,
    pid INTEGER,
    port INTEGER,
    started_at REAL,
    state TEXT NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    hostname TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);

CREATE TABLE ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,            -- sha256 hex; the token itself is never stored here
    created_at REAL NOT NULL
);
