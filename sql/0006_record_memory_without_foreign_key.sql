-- Record hashes no longer reference their tenant row by row. The foreign key's check ran once per inserted hash
-- (a thousand per blob): the largest share of PostgreSQL's work during a backfill (docs/benchmarks.md). A
-- deleted tenant's hashes still go with it (the trigger below), and none are written for a tenant once it is
-- deleted: every commit is fenced by its unit's row (collector_units), which is deleted with the tenant and which
-- the commit locks first.
ALTER TABLE forwarded_records DROP CONSTRAINT forwarded_records_tenant_id_fkey;

CREATE FUNCTION forget_tenant_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM forwarded_records WHERE tenant_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER tenants_forget_records AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION forget_tenant_records();
