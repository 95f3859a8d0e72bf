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
}

/// Leases, checkpoints and de-duplication state in PostgreSQL (docs/collection.md).
public struct PostgresCollectionStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Makes `collector_units` match the enabled tenants' content types: new units appear, removed ones go.
    public func syncUnits() async throws {
        try await client.query(
            """
            INSERT INTO collector_units (tenant_id, content_type)
            SELECT t.id, ct FROM tenants t, unnest(t.content_types) AS ct WHERE t.enabled
            ON CONFLICT DO NOTHING
            """, logger: logger)
        try await client.query(
            """
            DELETE FROM collector_units u WHERE NOT EXISTS (
                SELECT 1 FROM tenants t WHERE t.id = u.tenant_id AND t.enabled AND u.content_type = ANY (t.content_types))
            """, logger: logger)
    }

    /// Records this replica as alive and returns how many replicas are (including this one).
    public func heartbeat(owner: String, ttl: TimeInterval) async throws -> Int {
        try await client.query(
            """
            INSERT INTO gateway_replicas (owner, heartbeat_at) VALUES (\(owner), now())
            ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now()
            """, logger: logger)
        let seconds = ttl
        let rows = try await client.query(
            "SELECT count(*) FROM gateway_replicas WHERE heartbeat_at > now() - make_interval(secs => \(seconds))",
            logger: logger)
        for try await count in rows.decode(Int.self) { return max(1, count) }
        return 1
    }

    public func leaveReplicas(owner: String) async throws {
        try await client.query("DELETE FROM gateway_replicas WHERE owner = \(owner)", logger: logger)
    }

    public func units() async throws -> [UnitRow] {
        try await collectUnits(try await client.query("SELECT \(unescaped: Self.columns) FROM collector_units", logger: logger))
    }

    public func units(of tenant: TenantID) async throws -> [UnitRow] {
        try await collectUnits(try await client.query(
            "SELECT \(unescaped: Self.columns) FROM collector_units WHERE tenant_id = \(tenant.uuid)", logger: logger))
    }

    /// Every unit with its tenant's display name and checkpoint (for the demo's table).
    public func unitsWithNames() async throws -> [(name: String, checkpoint: Date?)] {
        var result: [(name: String, checkpoint: Date?)] = []
        for try await (name, checkpoint) in try await client.query(
            "SELECT t.data_source, u.checkpoint FROM collector_units u JOIN tenants t ON t.id = u.tenant_id", logger: logger
        ).decode((String, Date?).self) { result.append((name, checkpoint)) }
        return result
    }

    /// Collection progress over all units: how many there are, how many have a checkpoint at or after `since`,
    /// and the records forwarded (for the benchmark and the demo).
    public func progress(since: Date) async throws -> (units: Int, caughtUp: Int, records: Int64) {
        let rows = try await client.query(
            """
            SELECT count(*), count(*) FILTER (WHERE checkpoint >= \(since)), COALESCE(sum(records_forwarded), 0)::bigint
            FROM collector_units
            """, logger: logger)
        for try await (units, caughtUp, records) in rows.decode((Int, Int, Int64).self) { return (units, caughtUp, records) }
        return (0, 0, 0)
    }

    /// The database's clock, which every replica shares for lease expiry.
    public func now() async throws -> Date {
        for try await date in try await client.query("SELECT now()", logger: logger).decode(Date.self) { return date }
        return Date()
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
        return try await leaseKeys(client.query(
            """
            UPDATE collector_units u SET expires_at = now() + make_interval(secs => \(ttl))
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND u.owner = \(owner)
            RETURNING u.tenant_id, u.content_type, u.fencing
            """, logger: logger))
    }

    /// Takes free or expired units whose fencing is still the expected one, in one statement; each token grows by
    /// one. Returns the leases won, with their new tokens (another replica may have won the rest).
    public func acquire(_ leases: [LeaseKey], owner: String, ttl: TimeInterval) async throws -> [LeaseKey] {
        guard !leases.isEmpty else { return [] }
        let (tenants, types, fencings) = Self.columns(leases)
        return try await leaseKeys(client.query(
            """
            UPDATE collector_units u
            SET owner = \(owner), fencing = u.fencing + 1, expires_at = now() + make_interval(secs => \(ttl))
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND (u.owner IS NULL OR u.expires_at <= now())
            RETURNING u.tenant_id, u.content_type, u.fencing
            """, logger: logger))
    }

    /// Hands leases back so another replica can take them at once.
    public func release(_ leases: [LeaseKey], owner: String) async throws {
        guard !leases.isEmpty else { return }
        let (tenants, types, fencings) = Self.columns(leases)
        try await client.query(
            """
            UPDATE collector_units u SET owner = NULL, expires_at = now()
            FROM unnest(\(tenants)::uuid[], \(types)::text[], \(fencings)::bigint[]) AS x(tenant_id, content_type, fencing)
            WHERE u.tenant_id = x.tenant_id AND u.content_type = x.content_type AND u.fencing = x.fencing
              AND u.owner = \(owner)
            """, logger: logger)
    }

    private static func columns(_ leases: [LeaseKey]) -> ([UUID], [String], [Int64]) {
        (leases.map(\.tenant.uuid), leases.map(\.contentType.rawValue), leases.map(\.fencing))
    }

    private func leaseKeys(_ rows: PostgresRowSequence) async throws -> [LeaseKey] {
        var keys: [LeaseKey] = []
        for try await (tenant, type, fencing) in rows.decode((UUID, String, Int64).self) {
            guard let type = ContentType(rawValue: type) else { continue }
            keys.append(LeaseKey(tenant: TenantID(tenant), contentType: type, fencing: fencing))
        }
        return keys
    }

    /// Content ids of `ids` already forwarded for the tenant.
    public func forwardedContent(tenant: TenantID, ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        var known = Set<String>()
        for try await id in try await client.query(
            "SELECT content_id FROM forwarded_content WHERE tenant_id = \(tenant.uuid) AND content_id = ANY(\(ids))",
            logger: logger
        ).decode(String.self) { known.insert(id) }
        return known
    }

    /// Record-id hashes of `hashes` already forwarded for the tenant, read together with the unit's fencing token
    /// so that a collector checks its lease before every blob it forwards. Nil when the lease is no longer
    /// `fencing` (taken over, or the unit removed because its tenant was deleted, disabled or narrowed).
    public func forwardedRecords(tenant: TenantID, contentType: ContentType, fencing: Int64, hashes: [Int64]) async throws -> Set<Int64>? {
        let rows = try await client.query(
            """
            SELECT (SELECT fencing FROM collector_units WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue)),
                   ARRAY(SELECT id_hash FROM forwarded_records WHERE tenant_id = \(tenant.uuid) AND id_hash = ANY(\(hashes)))
            """, logger: logger)
        for try await (current, known) in rows.decode((Int64?, [Int64]).self) {
            return current == fencing ? Set(known) : nil
        }
        return nil
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
    /// one transaction, only if the fencing token is still ours. Returns false when the lease was lost.
    public func commit(
        tenant: TenantID, contentType: ContentType, fencing: Int64, blobs: [DeliveredBlob], checkpoint: Date?
    ) async throws -> Bool {
        try await client.transaction(logger: logger) { tx in
            let rows = try await tx.query(
                """
                SELECT fencing FROM collector_units WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue)
                FOR UPDATE
                """, logger: logger)
            var current: Int64?
            for try await value in rows.decode(Int64.self) { current = value }
            guard current == fencing else { return false }
            let hashes = blobs.flatMap(\.recordHashes)
            if !hashes.isEmpty {
                try await tx.query(
                    """
                    INSERT INTO forwarded_records (tenant_id, id_hash) SELECT \(tenant.uuid), unnest(\(hashes)::bigint[])
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            if !blobs.isEmpty {
                let ids = blobs.map(\.contentID)
                let created = blobs.map(\.contentCreated)
                try await tx.query(
                    """
                    INSERT INTO forwarded_content (tenant_id, content_id, content_created)
                    SELECT \(tenant.uuid), * FROM unnest(\(ids)::text[], \(created)::timestamptz[])
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            let forwarded = Int64(blobs.reduce(0) { $0 + $1.forwarded })
            let skipped = Int64(blobs.filter(\.skipped).count)
            try await tx.query(
                """
                UPDATE collector_units SET checkpoint = COALESCE(\(checkpoint), checkpoint),
                    records_forwarded = records_forwarded + \(forwarded), blobs_skipped = blobs_skipped + \(skipped),
                    last_success_at = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN last_success_at ELSE now() END,
                    last_error_code = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN last_error_code ELSE NULL END,
                    last_error_advice = CASE WHEN \(checkpoint)::timestamptz IS NULL THEN last_error_advice ELSE NULL END
                WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue)
                """, logger: logger)
            return true
        }
    }

    public func recordError(tenant: TenantID, contentType: ContentType, fencing: Int64, code: String, advice: String) async throws {
        try await client.query(
            """
            UPDATE collector_units SET last_error_code = \(code), last_error_advice = \(advice)
            WHERE tenant_id = \(tenant.uuid) AND content_type = \(contentType.rawValue) AND fencing = \(fencing)
            """, logger: logger)
    }

    /// Forgets what can no longer be listed: blobs older than their 7-day life plus margin, record hashes too.
    public func prune() async throws {
        try await client.query("DELETE FROM forwarded_content WHERE content_created < now() - interval '8 days'", logger: logger)
        try await client.query("DELETE FROM forwarded_records WHERE seen_at < now() - interval '8 days'", logger: logger)
    }

    static let columns = """
        tenant_id, content_type, owner, expires_at, fencing, checkpoint, last_success_at, last_error_code,
        last_error_advice, records_forwarded, blobs_skipped
        """

    private func collectUnits(_ rows: PostgresRowSequence) async throws -> [UnitRow] {
        var units: [UnitRow] = []
        for try await row in rows {
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
                blobsSkipped: try r["blobs_skipped"].decode(Int64.self)))
        }
        return units
    }

    private func changed(_ rows: PostgresRowSequence) async throws -> Bool {
        for try await _ in rows { return true }
        return false
    }
}
