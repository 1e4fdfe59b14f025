-- Log drains (drains:add): where copies of an app's log lines go.
CREATE TABLE drains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    token TEXT NOT NULL UNIQUE,             -- d.<uuid>, as Heroku names drains
    url TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (app_id, url)
);
