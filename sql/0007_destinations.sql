-- Named UTMStack destinations (docs/destinations.md). `default` is not stored: the configuration defines it.
-- The network path's connection key is sealed like a client secret (AES-256-GCM under connection_key_id, the
-- destination's name as additional authenticated data).
CREATE TABLE destinations (
    name                text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' AND name <> 'default'),
    kind                text NOT NULL CHECK (kind IN ('socket', 'network')),
    socket_path         text,
    host                text,
    port                integer CHECK (port BETWEEN 1 AND 65535),
    server_name         text,
    ca_pem              text,
    connection_key_id   text,
    connection_key_box  bytea,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             bigint NOT NULL DEFAULT 1,
    CHECK ((kind = 'socket' AND socket_path IS NOT NULL AND host IS NULL AND connection_key_box IS NULL)
        OR (kind = 'network' AND host IS NOT NULL AND port IS NOT NULL AND socket_path IS NULL
            AND connection_key_id IS NOT NULL AND connection_key_box IS NOT NULL))
);

CREATE INDEX destinations_connection_key_id_idx ON destinations (connection_key_id);

-- Where each tenant's records go. No foreign key: `default` has no row; the store checks the name, and refuses to
-- delete a destination while a tenant names it, under row locks.
ALTER TABLE tenants ADD COLUMN destination text NOT NULL DEFAULT 'default';
CREATE INDEX tenants_destination_idx ON tenants (destination);
