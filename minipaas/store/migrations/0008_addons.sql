-- Add-ons (addons:create heroku-postgresql): which app has which service, and under what name
-- the service knows it (the PostgreSQL role and database). The password is not kept here: it
-- lives in the app's DATABASE_URL config var only.
CREATE TABLE addons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    service TEXT NOT NULL,                  -- heroku-postgresql
    name TEXT NOT NULL UNIQUE,              -- the role and database name in minipaas's cluster
    config_var TEXT NOT NULL,               -- DATABASE_URL
    created_at REAL NOT NULL,
    UNIQUE (app_id, service)
);
