-- What Microsoft says of each tenant's credential (docs/expiry.md). secret_expires_at stays the date the operator
-- gave (or the certificate's end); Graph's finding and Microsoft's refusal are kept beside it, and the date in force
-- is derived from the three (refusal, then Graph, then the operator). secret_expiry_source is no longer read; it is
-- still written as before so that replicas of the previous release keep working during a rolling upgrade.
-- credential_generation grows with every new credential: a Graph finding or an alert belongs to one generation.
ALTER TABLE tenants
    ADD COLUMN credential_generation bigint NOT NULL DEFAULT 1,
    ADD COLUMN graph_outcome text CHECK (graph_outcome IN
        ('found', 'permission_denied', 'application_not_found', 'credential_not_found', 'failed')),
    ADD COLUMN graph_expires_at timestamptz,
    ADD COLUMN graph_checked_at timestamptz,
    ADD COLUMN secret_refused_at timestamptz;

-- Work that exactly one replica does at a time (the expiry checks and alerts): a lease with a fencing token, like
-- the collector units'.
CREATE TABLE fleet_leases (
    name        text PRIMARY KEY,
    owner       text,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    fencing     bigint NOT NULL DEFAULT 0
);

-- Expiry alerts: one row per (tenant, credential generation, stage), so each stage is alerted once across restarts
-- and replicas; the row is also the outbox its deliveries (UTMStack, the webhook) are retried from.
CREATE TABLE secret_expiry_alerts (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    credential_generation  bigint NOT NULL,
    stage                  text NOT NULL,
    code                   text NOT NULL,
    expires_at             timestamptz NOT NULL,
    source                 text NOT NULL,
    advice                 text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    utmstack_pending       boolean NOT NULL,
    webhook_pending        boolean NOT NULL,
    attempts               integer NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    last_error             text,
    UNIQUE (tenant_id, credential_generation, stage)
);
CREATE INDEX secret_expiry_alerts_pending_idx ON secret_expiry_alerts (next_attempt_at)
    WHERE utmstack_pending OR webhook_pending;
