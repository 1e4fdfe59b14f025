-- A dyno size per process type (`ps:type web=standard-2x`, app.json formation.<type>.size):
-- Heroku's name or an amount such as 512M, as `minipaas.sizes.parse_size` wrote it. NULL: no
-- memory quota, what every existing process type keeps.
ALTER TABLE formation ADD COLUMN size TEXT;
