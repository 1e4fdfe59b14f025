-- What a supervisor needs to re-adopt a running dyno after a restart of minipaas.
ALTER TABLE dynos ADD COLUMN start_ticks INTEGER;
ALTER TABLE dynos ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
