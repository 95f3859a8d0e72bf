-- Which UTMStack destination refused each dead letter (docs/destinations.md). Letters set aside before destinations
-- existed were refused by the one UTMStack there was: `default`.
ALTER TABLE dead_letters ADD COLUMN destination text NOT NULL DEFAULT 'default';
