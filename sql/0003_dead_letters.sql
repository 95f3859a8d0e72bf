-- Logs UTMStack refused for good (too large for the engine, or refused on every attempt), set aside with their
-- reason instead of blocking the stream; listed and sent again through the admin API (docs/failure-handling.md).
-- message is the encoded plugins.Log, sent again as it is.
CREATE TABLE dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         uuid REFERENCES tenants (id) ON DELETE CASCADE,
    content_type      text,
    content_id        text,
    log_id            text NOT NULL,
    record_id         text,
    reason            text NOT NULL,
    detail            text NOT NULL,
    message           bytea NOT NULL,
    attempts          integer NOT NULL DEFAULT 1,
    first_refused_at  timestamptz NOT NULL DEFAULT now(),
    last_refused_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dead_letters_log_idx ON dead_letters (tenant_id, log_id);
