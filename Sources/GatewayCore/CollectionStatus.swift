import Foundation

/// How collection of one content type of a tenant is going, as `GET /api/v1/tenants/{id}` shows it.
public struct UnitStatus: Sendable, Equatable {
    public enum State: String, Sendable { case ok, backfilling, degraded, stalled, authFailed = "auth_failed", disabled }
    public enum Subscription: String, Sendable { case enabled, pending, disabled }

    public var contentType: ContentType
    public var state: State
    public var subscription: Subscription?
    public var checkpoint: Date?
    public var lagSeconds: Int?
    public var lastSuccessAt: Date?
    public var lastErrorCode: String?
    public var lastErrorAdvice: String?
    public var recordsForwarded: Int64
    public var blobsSkipped: Int64
    /// Records UTMStack refused for good, set aside (dead letters not yet delivered by a retry).
    public var recordsDeadLettered: Int
    public var owner: String?

    public init(
        contentType: ContentType, state: State, subscription: Subscription?, checkpoint: Date?, lagSeconds: Int?,
        lastSuccessAt: Date?, lastErrorCode: String?, lastErrorAdvice: String?, recordsForwarded: Int64,
        blobsSkipped: Int64, recordsDeadLettered: Int = 0, owner: String?
    ) {
        self.contentType = contentType
        self.state = state
        self.subscription = subscription
        self.checkpoint = checkpoint
        self.lagSeconds = lagSeconds
        self.lastSuccessAt = lastSuccessAt
        self.lastErrorCode = lastErrorCode
        self.lastErrorAdvice = lastErrorAdvice
        self.recordsForwarded = recordsForwarded
        self.blobsSkipped = blobsSkipped
        self.recordsDeadLettered = recordsDeadLettered
        self.owner = owner
    }

    /// Codes that mean the credentials or the consent are at fault (an admin must act).
    public static let authenticationCodes: Set<String> = [
        "invalid_client_secret", "client_secret_expired", "tenant_not_found", "app_not_in_tenant",
        "missing_activity_feed_permission", "certificate_rejected", "consent_required", "application_disabled",
        "missing_credential", "invalid_tenant_id", "unauthorized",
    ]

    /// How long a unit may go without committing anything before it is `stalled`: five poll intervals, at least
    /// five minutes (a poll of a large blob, retries with backoff and a slow UTMStack fit in that).
    public static func stallAfter(pollInterval: TimeInterval) -> TimeInterval { max(5 * pollInterval, 300) }

    /// The state from the stored facts. Pure. `progressAt` is when the unit last committed anything.
    public static func state(
        enabled: Bool, lastErrorCode: String?, checkpoint: Date?, progressAt: Date?, now: Date, pollInterval: TimeInterval
    ) -> State {
        if !enabled { return .disabled }
        if let code = lastErrorCode, authenticationCodes.contains(code) { return .authFailed }
        if let progressAt, now.timeIntervalSince(progressAt) > stallAfter(pollInterval: pollInterval) { return .stalled }
        if lastErrorCode != nil { return .degraded }
        guard let checkpoint, now.timeIntervalSince(checkpoint) <= 2 * pollInterval + 120 else { return .backfilling }
        return .ok
    }

    public static func subscription(lastErrorCode: String?, lastSuccessAt: Date?) -> Subscription? {
        switch lastErrorCode {
        case "subscription_missing": return .pending
        case "subscription_disabled": return .disabled
        default: return lastSuccessAt == nil ? nil : .enabled
        }
    }
}

/// Reads the collection status of a tenant's content types.
public protocol CollectionStatusSource: Sendable {
    func status(of tenant: Tenant) async throws -> [UnitStatus]
}
