-- Collection state. One row per (tenant, content type): the lease (owner, expiry, fencing token) and the
-- checkpoint with the unit's status. A checkpoint write must carry the current fencing token.
CREATE TABLE collector_units (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    content_type        text NOT NULL,
    owner               text,
    expires_at          timestamptz NOT NULL DEFAULT '-infinity',
    fencing             bigint NOT NULL DEFAULT 0,
    checkpoint          timestamptz,
    last_success_at     timestamptz,
    last_error_code     text,
    last_error_advice   text,
    records_forwarded   bigint NOT NULL DEFAULT 0,
    blobs_skipped       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, content_type)
);

-- Replicas sharing the work; live while their heartbeat is younger than the lease TTL.
CREATE TABLE gateway_replicas (
    owner         text PRIMARY KEY,
    heartbeat_at  timestamptz NOT NULL
);

-- Blobs forwarded (and acknowledged), kept for their 7-day life so relisting never forwards one twice.
CREATE TABLE forwarded_content (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    content_id       text NOT NULL,
    content_created  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, content_id)
);
CREATE INDEX forwarded_content_created_idx ON forwarded_content (content_created);

-- Record ids forwarded per tenant, as 64-bit hashes, so a record repeated in another blob is not sent again.
CREATE TABLE forwarded_records (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id_hash    bigint NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id_hash)
);
CREATE INDEX forwarded_records_seen_idx ON forwarded_records (seen_at);
