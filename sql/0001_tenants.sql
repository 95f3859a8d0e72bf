-- The tenant registry: one row per onboarded customer Microsoft 365 tenant.
-- The credential is sealed (AES-256-GCM, nonce || ciphertext || tag) under the key named by credential_key_id,
-- with the row's id as additional authenticated data.
CREATE TABLE tenants (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    ms_tenant_id        uuid NOT NULL,
    client_id           uuid NOT NULL,
    cloud               text NOT NULL CHECK (cloud IN ('commercial', 'gcc', 'gcchigh', 'dod', 'china')),
    content_types       text[] NOT NULL CHECK (cardinality(content_types) >= 1),
    publisher_id        uuid,
    utm_tenant_id       text NOT NULL,
    data_source         text NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    credential_kind     text NOT NULL CHECK (credential_kind IN ('secret', 'certificate')),
    credential_key_id   text NOT NULL,
    credential_box      bytea NOT NULL,
    secret_expires_at   timestamptz,
    -- Where secret_expires_at came from: the operator (onboarding/rotation), Microsoft Graph, or a token error.
    secret_expiry_source text CHECK (secret_expiry_source IN ('onboarding', 'graph', 'token_error')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             bigint NOT NULL DEFAULT 1,
    CONSTRAINT tenants_ms_tenant_id_key UNIQUE (ms_tenant_id)
);

CREATE INDEX tenants_credential_key_id_idx ON tenants (credential_key_id);
