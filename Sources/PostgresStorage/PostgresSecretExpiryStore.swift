import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// What Microsoft says of credentials (Graph findings, refusals), the fleet-wide lease of the expiry watcher, and
/// the alerts outbox (sql/0005_secret_expiry.sql, docs/expiry.md).
public struct PostgresSecretExpiryStore: SecretExpiryRecorder {
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    // MARK: What Microsoft says

    /// Stores a Graph lookup's finding for the credential of `generation` (a rotation since makes it moot). A failed
    /// lookup does not erase an earlier finding: it is kept, and asked again within the hour.
    public func recordGraphFinding(_ finding: GraphExpiryFinding, tenant: TenantID, generation: Int64) async throws {
        let failed = finding.outcome == .failed
        _ = try await database.query(
            """
            UPDATE tenants SET
                graph_outcome = CASE WHEN \(failed) AND graph_outcome IS NOT NULL THEN graph_outcome ELSE \(finding.outcome.rawValue) END,
                graph_expires_at = CASE WHEN \(failed) AND graph_outcome IS NOT NULL THEN graph_expires_at ELSE \(finding.expiresAt) END,
                graph_checked_at = CASE WHEN \(failed) AND graph_outcome IS NOT NULL AND graph_outcome <> 'failed'
                    THEN \(finding.checkedAt) - interval '23 hours' ELSE \(finding.checkedAt) END
            WHERE id = \(tenant.uuid) AND credential_generation = \(generation)
            """)
    }

    public func recordRefusal(_ tenant: TenantID, at date: Date) async throws {
        let rows = try await database.query(
            "UPDATE tenants SET secret_refused_at = \(date) WHERE id = \(tenant.uuid) AND secret_refused_at IS NULL RETURNING id")
        if !rows.isEmpty { logger.warning("Microsoft refuses the client secret as expired", metadata: ["tenant": "\(tenant)"]) }
    }

    public func clearRefusal(_ tenant: TenantID) async throws {
        let rows = try await database.query(
            "UPDATE tenants SET secret_refused_at = NULL WHERE id = \(tenant.uuid) AND secret_refused_at IS NOT NULL RETURNING id")
        if !rows.isEmpty { logger.notice("Microsoft issues tokens again with the tenant's secret", metadata: ["tenant": "\(tenant)"]) }
    }

    // MARK: The fleet lease

    /// Takes or extends the lease `name` for `owner`; returns its fencing token while held, nil when another
    /// replica holds it. One statement; the database's clock decides expiry.
    public func holdLease(_ name: String, owner: String, ttl: TimeInterval) async throws -> Int64? {
        try await database.query(
            """
            INSERT INTO fleet_leases AS l (name, owner, expires_at, fencing)
            VALUES (\(name), \(owner), now() + make_interval(secs => \(ttl)), 1)
            ON CONFLICT (name) DO UPDATE SET
                owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,
                fencing = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > now() THEN l.fencing ELSE l.fencing + 1 END
            WHERE l.owner = EXCLUDED.owner OR l.owner IS NULL OR l.expires_at <= now()
            RETURNING fencing
            """
        ).decode(Int64.self).first
    }

    /// Hands the lease back (graceful shutdown), so another replica takes over at its next round.
    public func releaseLease(_ name: String, owner: String) async throws {
        _ = try await database.query(
            "UPDATE fleet_leases SET owner = NULL, expires_at = '-infinity' WHERE name = \(name) AND owner = \(owner)")
    }

    // MARK: Alerts

    /// A stage of a tenant's credential that is due, to be recorded once.
    public struct DueAlert: Sendable {
        public var tenant: TenantID
        public var generation: Int64
        public var stage: ExpiryAlertStage
        public var expiresAt: Date
        public var source: SecretExpirySource
        public var advice: String

        public init(tenant: TenantID, generation: Int64, stage: ExpiryAlertStage, expiresAt: Date, source: SecretExpirySource, advice: String) {
            self.tenant = tenant
            self.generation = generation
            self.stage = stage
            self.expiresAt = expiresAt
            self.source = source
            self.advice = advice
        }
    }

    /// Records the alerts not recorded before (one statement), if the lease of `fencing` is still held; returns
    /// how many are new.
    public func enqueue(_ alerts: [DueAlert], webhook: Bool, lease: String, fencing: Int64) async throws -> Int {
        guard !alerts.isEmpty else { return 0 }
        return try await database.query(
            """
            INSERT INTO secret_expiry_alerts (tenant_id, credential_generation, stage, code, expires_at, source, advice,
                utmstack_pending, webhook_pending)
            SELECT t, g, s, c, e, src, a, true, \(webhook)
            FROM unnest(\(alerts.map(\.tenant.uuid)), \(alerts.map(\.generation)), \(alerts.map(\.stage.name)),
                \(alerts.map(\.stage.code)), \(alerts.map(\.expiresAt)), \(alerts.map(\.source.rawValue)),
                \(alerts.map(\.advice))) AS x(t, g, s, c, e, src, a)
            WHERE EXISTS (SELECT 1 FROM fleet_leases WHERE name = \(lease) AND fencing = \(fencing) AND expires_at > now())
            ON CONFLICT (tenant_id, credential_generation, stage) DO NOTHING
            RETURNING id
            """
        ).count
    }

    /// Alerts still owed to a destination whose next attempt is due, oldest first.
    public func pending(limit: Int = 100) async throws -> [ExpiryAlert] {
        try await database.query(
            """
            SELECT a.id, a.tenant_id, t.name, t.ms_tenant_id, t.client_id, a.stage, a.code, a.expires_at, a.source,
                a.advice, a.utmstack_pending, a.webhook_pending, a.attempts
            FROM secret_expiry_alerts a JOIN tenants t ON t.id = a.tenant_id
            WHERE (a.utmstack_pending OR a.webhook_pending) AND a.next_attempt_at <= now()
            ORDER BY a.id LIMIT \(limit)
            """
        ).map { row in
            let (id, tenant, name, microsoftTenant, client, stage, code, expiresAt, source, advice, utmstack, webhook, attempts) =
                try row.decode((Int64, UUID, String, UUID, UUID, String, String, Date, String, String, Bool, Bool, Int32).self)
            return ExpiryAlert(
                id: id, tenant: TenantID(tenant), tenantName: name, microsoftTenantID: microsoftTenant, clientID: client,
                stage: stage, code: code, expiresAt: expiresAt, source: SecretExpirySource(rawValue: source) ?? .onboarding,
                advice: advice, utmstackPending: utmstack, webhookPending: webhook, attempts: Int(attempts))
        }
    }

    /// Records one delivery round of an alert: which destinations took it, and when to try the others again.
    /// `abandon` stops retrying (the alert is too old); the caller logs it.
    public func recordDelivery(
        _ id: Int64, utmstackPending: Bool, webhookPending: Bool, retryIn: TimeInterval, error: String?, abandon: Bool
    ) async throws {
        let stillPending = (utmstackPending || webhookPending) && !abandon
        _ = try await database.query(
            """
            UPDATE secret_expiry_alerts SET
                utmstack_pending = \(utmstackPending && !abandon), webhook_pending = \(webhookPending && !abandon),
                attempts = attempts + \(stillPending || abandon ? 1 : 0),
                next_attempt_at = now() + make_interval(secs => \(retryIn)),
                last_error = \(error)
            WHERE id = \(id)
            """)
    }

    /// Every alert of a tenant, oldest first (tests and support).
    public func alerts(of tenant: TenantID) async throws -> [(stage: String, code: String)] {
        try await database.query(
            "SELECT stage, code FROM secret_expiry_alerts WHERE tenant_id = \(tenant.uuid) ORDER BY id"
        ).decode((String, String).self).map { (stage: $0.0, code: $0.1) }
    }
}
