-- A destination's generation (docs/destinations.md): a number never reused, taken anew by every create and every
-- change. Forwarders are keyed by it, not by name and version: a destination deleted and created again under the
-- same name (its version 1 again) is a new destination and never gets the old one's forwarder, endpoint or key.
CREATE SEQUENCE destination_generations AS bigint;
ALTER TABLE destinations ADD COLUMN generation bigint NOT NULL DEFAULT nextval('destination_generations') UNIQUE;
ALTER SEQUENCE destination_generations OWNED BY destinations.generation;
