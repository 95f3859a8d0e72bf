import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// A unit's lease and checkpoint as stored (`collector_units`).
public struct UnitRow: Sendable, Equatable {
    public var tenant: TenantID
    public var contentType: ContentType
    public var owner: String?
    public var expiresAt: Date
    public var fencing: Int64
    public var checkpoint: Date?
    public var lastSuccessAt: Date?
    public var lastErrorCode: String?
    public var lastErrorAdvice: String?
    public var recordsForwarded: Int64
    public var blobsSkipped: Int64
    /// False while the tenant is paused or no longer selects the content type (the row keeps its checkpoint).
    public var active: Bool
    /// When the unit last committed anything (a blob or its checkpoint), or became active.
    public var progressAt: Date
}

/// Leases, checkpoints and de-duplication state in PostgreSQL (docs/collection.md).
public struct PostgresCollectionStore: Sendable {
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    /// Makes `collector_units` follow the tenants: a unit per enabled tenant and selected content type is active;
    /// a paused tenant's units, and those of a content type it no longer selects, become inactive and keep their
    /// checkpoint (deleting the tenant deletes them). A unit that changes side is released and its progress clock
    /// restarts.
    public func syncUnits() async throws {
        try await database.query(
            """
            INSERT INTO collector_units (tenant_id, content_type)
            SELECT t.id, ct FROM tenants t, unnest(t.content_types) AS ct WHERE t.enabled
            ON CONFLICT DO NOTHING
            """)
        try await database.query(
            """
            UPDATE collector_units u SET active = NOT u.active, owner = NULL, expires_at = now(), progress_at = now()
            WHERE u.active <> EXISTS (
                SELECT 1 FROM tenants t WHERE t.id = u.tenant_id AND t.enabled AND u.content_type = ANY (t.content_types))
            """)
    }

    /// Records this replica as alive and returns how many replicas are (including this one).
    public func heartbeat(owner: String, ttl: TimeInterval) async throws -> Int {
        try await database.query(
            """
            INSERT INTO gateway_replicas (owner, heartbeat_at) VALUES (\(owner), now())
            ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now()
            """)
        let rows = try await database.query(
            "SELECT count(*) FROM gateway_replicas WHERE heartbeat_at > now() - make_interval(secs => \(ttl))")
        return max(1, try rows.decode(Int.self).first ?? 1)
    }

    public func leaveReplicas(owner: String) async throws {
        try await database.query("DELETE FROM gateway_replicas WHERE owner = \(owner)")
    }

    /// A unit's lease and checkpoint: what a lease round reads of every active unit.
    public struct LeaseRow: Sendable {
        public var tenant: TenantID
        public var contentType: ContentType
        public var owner: String?
        public var expiresAt: Date
        public var fencing: Int64
        public var checkpoint: Date?
    }

    /// The lease table of the active units, decoded by position (a round reads tens of thousands of rows).
    public func leaseRows() async throws -> [LeaseRow] {
        try await database.query(
            """
            SELECT tenant_id, content_type, owner, GREATEST(expires_at, 'epoch'::timestamptz), fencing, checkpoint
            FROM collector_units WHERE active
            """
        ).decode((UUID, String, String?, Date, Int64, Date?).self).compactMap { tenant, type, owner, expires, fencing, checkpoint in
            ContentType(rawValue: type).map {
                LeaseRow(tenant: TenantID(tenant), contentType: $0, owner: owner, expiresAt: expires, fencing: fencing, checkpoint: checkpoint)
            }
        }
    }

    /// Every unit of a tenant, active or not (its status).
    public func units(of tenant: TenantID) async throws -> [UnitRow] {
        try Self.units(try await database.query(
            "SELECT \(unescaped: Self.columns) FROM collector_units WHERE tenant_id = \(tenant.uuid)"))
    }

    /// The unit's checkpoint (nil: none yet, or no such unit).
    public func checkpoint(tenant: TenantID, contentType: ContentType) async throws -> Date? {
        try await database.query(
            "SELECT checkpoint FROM collector_units WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue)"
        ).decode(Date?.self).first ?? nil
    }

    /// Every active unit with its tenant's display name and checkpoint (for the demo's table).
    public func unitsWithNames() async throws -> [(name: String, checkpoint: Date?)] {
        try await database.query(
            "SELECT t.data_source, u.checkpoint FROM collector_units u JOIN tenants t ON t.id = u.tenant_id WHERE u.active"
        ).decode((String, Date?).self).map { (name: $0.0, checkpoint: $0.1) }
    }

    /// Collection progress over all units: how many there are, how many have a checkpoint at or after `since`,
    /// and the records forwarded (for the benchmark and the demo).
    public func progress(since: Date) async throws -> (units: Int, caughtUp: Int, records: Int64) {
        let rows = try await database.query(
            """
            SELECT count(*), count(*) FILTER (WHERE checkpoint >= \(since)), COALESCE(sum(records_forwarded), 0)::bigint
            FROM collector_units WHERE active
            """)
        return try rows.decode((Int, Int, Int64).self).first ?? (0, 0, 0)
    }

    /// Seconds since each active unit's last successful poll (a unit never polled counts from its activation), in
    /// ascending order, leaving out `excluding` (for the benchmarks' percentiles).
    public func successAges(excluding: (TenantID, ContentType)? = nil) async throws -> [Double] {
        let (tenant, type) = (excluding?.0.uuid, excluding?.1.rawValue)
        return try await database.query(
            """
            SELECT extract(epoch FROM now() - COALESCE(last_success_at, progress_at))::float8 AS age
            FROM collector_units
            WHERE active AND (\(tenant)::uuid IS NULL OR NOT (tenant_id = \(tenant)::uuid AND content_type = \(type)::text))
            ORDER BY age
            """
        ).decode(Double.self)
    }

    /// The database's clock, which every replica shares for lease expiry.
    public func now() async throws -> Date {
        try await database.query("SELECT now()").decode(Date.self).first ?? Date()
    }

    /// A unit and a fencing token: which lease an operation expects.
    public struct LeaseKey: Sendable, Hashable {
        public var tenant: TenantID
        public var contentType: ContentType
        public var fencing: Int64

        public init(tenant: TenantID, contentType: ContentType, fencing: Int64) {
            self.tenant = tenant
            self.contentType = contentType
            self.fencing = fencing
        }
    }

    /// Extends the leases this replica still holds, in one statement; returns those it extended.
    public func renew(_ leases: [LeaseKey], owner: String, ttl: TimeInterval) async throws -> [LeaseKey] {
        guard !leases.isEmpty else { return [] }
        let (tenants, types, fencings) = Self.columns(leases)
        return try Self.leaseKeys(await database.query(
            """
            UPDATE collector_units u SET expires_at = now() + make_interval(secs => \(ttl))
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND u.owner = \(owner) AND u.active
            RETURNING u.tenant_id, u.content_type, u.fencing
            """))
    }

    /// A lease won, with the unit's checkpoint as it was when it was won: from then on the former owner's commits
    /// are refused (fencing), so no later commit can move it under the new owner.
    public struct AcquiredLease: Sendable {
        public var key: LeaseKey
        public var checkpoint: Date?
    }

    /// Takes free or expired units whose fencing is still the expected one, in one statement; each token grows by
    /// one. Returns the leases won, with their new tokens and checkpoints (another replica may have won the rest),
    /// so that a first poll does not read its checkpoint again.
    public func acquire(_ leases: [LeaseKey], owner: String, ttl: TimeInterval) async throws -> [AcquiredLease] {
        guard !leases.isEmpty else { return [] }
        let (tenants, types, fencings) = Self.columns(leases)
        return try await database.query(
            """
            UPDATE collector_units u
            SET owner = \(owner), fencing = u.fencing + 1, expires_at = now() + make_interval(secs => \(ttl))
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND (u.owner IS NULL OR u.expires_at <= now()) AND u.active
            RETURNING u.tenant_id, u.content_type, u.fencing, u.checkpoint
            """
        ).decode((UUID, String, Int64, Date?).self).compactMap { tenant, type, fencing, checkpoint in
            ContentType(rawValue: type).map {
                AcquiredLease(key: LeaseKey(tenant: TenantID(tenant), contentType: $0, fencing: fencing), checkpoint: checkpoint)
            }
        }
    }

    /// Hands leases back so another replica can take them at once.
    public func release(_ leases: [LeaseKey], owner: String) async throws {
        guard !leases.isEmpty else { return }
        let (tenants, types, fencings) = Self.columns(leases)
        try await database.query(
            """
            UPDATE collector_units u SET owner = NULL, expires_at = now()
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND u.owner = \(owner)
            """)
    }

    private static func columns(_ leases: [LeaseKey]) -> ([UUID], [String], [Int64]) {
        (leases.map(\.tenant.uuid), leases.map(\.contentType.rawValue), leases.map(\.fencing))
    }

    private static func leaseKeys(_ rows: [PostgresRow]) throws -> [LeaseKey] {
        try rows.decode((UUID, String, Int64).self).compactMap { tenant, type, fencing in
            ContentType(rawValue: type).map { LeaseKey(tenant: TenantID(tenant), contentType: $0, fencing: fencing) }
        }
    }

    /// Content ids of `ids` already forwarded for the tenant.
    ///
    /// This lookup and the next probe the primary key once per id, whatever the tenant's history: a correlated
    /// scalar subquery stays a per-row index probe, where `= ANY(…)` or `EXISTS` let the planner scan every
    /// row of the tenant (a hash or bitmap of hundreds of thousands of rows per blob during a backfill).
    public func forwardedContent(tenant: TenantID, ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return Set(try await database.query(
            """
            SELECT id FROM unnest(\(ids)::text[]) AS id
            WHERE (SELECT true FROM forwarded_content f WHERE f.tenant_id = \(tenant.uuid) AND f.content_id = id)
            """
        ).decode(String.self))
    }

    /// Record-id hashes of `hashes` already forwarded for the tenant, read together with the unit's fencing token
    /// so that a collector checks its lease before every blob it forwards. Nil when the lease is no longer
    /// `fencing` (taken over, or the unit removed because its tenant was deleted, disabled or narrowed).
    public func forwardedRecords(tenant: TenantID, contentType: ContentType, fencing: Int64, hashes: [Int64]) async throws -> Set<Int64>? {
        let rows = try await database.query(
            """
            SELECT (SELECT fencing FROM collector_units WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue)),
                   ARRAY(SELECT h FROM unnest(\(hashes)::bigint[]) AS h
                         WHERE (SELECT true FROM forwarded_records f WHERE f.tenant_id = \(tenant.uuid) AND f.id_hash = h))
            """)
        guard let (current, known) = try rows.decode((Int64?, [Int64]).self).first else { return nil }
        return current == fencing ? Set(known) : nil
    }

    public struct DeliveredBlob: Sendable {
        public var contentID: String
        public var contentCreated: Date
        public var recordHashes: [Int64]
        public var forwarded: Int
        public var skipped: Bool

        public init(contentID: String, contentCreated: Date, recordHashes: [Int64], forwarded: Int, skipped: Bool) {
            self.contentID = contentID
            self.contentCreated = contentCreated
            self.recordHashes = recordHashes
            self.forwarded = forwarded
            self.skipped = skipped
        }
    }

    /// After UTMStack acknowledged them: remembers the blobs and their record hashes and moves the checkpoint, in
    /// one statement (one round trip, atomic), only if the fencing token is still ours. Returns false when the
    /// lease was lost; nothing is written then. The lease row is locked first, so a replica taking the unit over
    /// concurrently either waits for this commit or makes it write nothing.
    public func commit(
        tenant: TenantID, contentType: ContentType, fencing: Int64, blobs: [DeliveredBlob], checkpoint: Date?
    ) async throws -> Bool {
        let hashes = blobs.flatMap(\.recordHashes)
        let ids = blobs.map(\.contentID)
        let created = blobs.map(\.contentCreated)
        let forwarded = Int64(blobs.reduce(0) { $0 + $1.forwarded })
        let skipped = Int64(blobs.filter(\.skipped).count)
        let rows = try await database.query(
            """
            WITH lease AS (
                SELECT tenant_id, content_type FROM collector_units
                WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue) AND fencing = \(fencing)
                FOR UPDATE),
            records AS (
                INSERT INTO forwarded_records (tenant_id, id_hash)
                SELECT lease.tenant_id, h FROM lease, unnest(\(hashes)::bigint[]) AS h
                ON CONFLICT DO NOTHING),
            content AS (
                INSERT INTO forwarded_content (tenant_id, content_id, content_created)
                SELECT lease.tenant_id, x.id, x.created FROM lease, unnest(\(ids)::text[], \(created)::timestamptz[]) AS x(id, created)
                ON CONFLICT DO NOTHING)
            UPDATE collector_units u SET checkpoint = COALESCE(\(checkpoint)::timestamptz, u.checkpoint),
                records_forwarded = u.records_forwarded + \(forwarded), blobs_skipped = u.blobs_skipped + \(skipped),
                progress_at = now(),
                last_success_at = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN u.last_success_at ELSE now() END,
                last_error_code = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN u.last_error_code ELSE NULL END,
                last_error_advice = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN u.last_error_advice ELSE NULL END
            FROM lease
            WHERE u.tenant_id = lease.tenant_id AND u.content_type = lease.content_type AND u.fencing = \(fencing)
            RETURNING 1
            """)
        return !rows.isEmpty
    }

    /// A checkpoint that moved over windows without blobs.
    public struct CheckpointMove: Sendable {
        public var tenant: TenantID
        public var contentType: ContentType
        public var fencing: Int64
        public var checkpoint: Date

        public init(tenant: TenantID, contentType: ContentType, fencing: Int64, checkpoint: Date) {
            self.tenant = tenant
            self.contentType = contentType
            self.fencing = fencing
            self.checkpoint = checkpoint
        }
    }

    /// Moves many units' checkpoints at once (a successful poll each), each only if its fencing token is still
    /// the given one; never backwards.
    public func commitCheckpoints(_ moves: [CheckpointMove]) async throws {
        guard !moves.isEmpty else { return }
        try await database.query(
            """
            UPDATE collector_units u SET checkpoint = GREATEST(u.checkpoint, x.checkpoint), progress_at = now(),
                last_success_at = now(), last_error_code = NULL, last_error_advice = NULL
            FROM unnest(\(moves.map(\.tenant.uuid))::uuid[], \(moves.map(\.contentType.rawValue))::text[],
                        \(moves.map(\.fencing))::bigint[], \(moves.map(\.checkpoint))::timestamptz[])
                AS x(tenant_id, content_type, fencing, checkpoint)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
            """)
    }

    public func recordError(tenant: TenantID, contentType: ContentType, fencing: Int64, code: String, advice: String) async throws {
        try await database.query(
            """
            UPDATE collector_units SET last_error_code = \(code), last_error_advice = \(advice)
            WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue) AND fencing = \(fencing)
            """)
    }

    /// Forgets what can no longer be listed: blobs older than their 7-day life plus margin, record hashes too. In
    /// batches, so that no statement runs into the statement timeout however much there is to delete.
    public func prune(batch: Int = 20_000) async throws {
        for table in ["forwarded_content WHERE content_created", "forwarded_records WHERE seen_at"] {
            let (name, condition) = (table.prefix { $0 != " " }, table.drop { $0 != " " })
            while true {
                let deleted = try await database.query(
                    """
                    WITH gone AS (DELETE FROM \(unescaped: String(name)) WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM \(unescaped: String(name)) \(unescaped: String(condition)) < now() - interval '8 days'
                        LIMIT \(batch))) RETURNING 1)
                    SELECT count(*) FROM gone
                    """
                ).decode(Int.self).first ?? 0
                if deleted < batch { break }
            }
        }
    }

    static let columns = """
        tenant_id, content_type, owner, expires_at, fencing, checkpoint, last_success_at, last_error_code,
        last_error_advice, records_forwarded, blobs_skipped, active, progress_at
        """

    private static func units(_ rows: [PostgresRow]) throws -> [UnitRow] {
        var units: [UnitRow] = []
        for row in rows {
            let r = row.makeRandomAccess()
            guard let type = ContentType(rawValue: try r["content_type"].decode(String.self)) else { continue }
            units.append(UnitRow(
                tenant: TenantID(try r["tenant_id"].decode(UUID.self)), contentType: type,
                owner: try r["owner"].decode(String?.self), expiresAt: (try? r["expires_at"].decode(Date.self)) ?? .distantPast,
                fencing: try r["fencing"].decode(Int64.self), checkpoint: try r["checkpoint"].decode(Date?.self),
                lastSuccessAt: try r["last_success_at"].decode(Date?.self),
                lastErrorCode: try r["last_error_code"].decode(String?.self),
                lastErrorAdvice: try r["last_error_advice"].decode(String?.self),
                recordsForwarded: try r["records_forwarded"].decode(Int64.self),
                blobsSkipped: try r["blobs_skipped"].decode(Int64.self),
                active: try r["active"].decode(Bool.self), progressAt: try r["progress_at"].decode(Date.self)))
        }
        return units
    }
}
