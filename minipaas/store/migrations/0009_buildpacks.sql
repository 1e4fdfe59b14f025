-- The app's buildpacks (buildpacks:set, buildpacks:add), in the order they run. A setting of
-- the app, not of a release: as on Heroku, a rollback keeps it; apps:destroy removes it.
CREATE TABLE app_buildpacks (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,              -- 1-based: the first runs first
    url TEXT NOT NULL,                      -- as given: heroku/python, a git URL or a path
    PRIMARY KEY (app_id, position)
);
