import Foundation

/// When an expiring or expired credential is alerted: once as it crosses each threshold (by default 30, 14, 7 and 1
/// days before its expiry), then once a day after it expired. Pure; the store remembers which stages were sent for
/// which credential, so a restart or another replica never sends one again.
public struct ExpiryAlertPolicy: Sendable, Equatable {
    public static let defaultThresholds = [30, 14, 7, 1]

    /// Days before expiry, largest first, each at least 1.
    public let thresholds: [Int]

    public init(thresholds: [Int] = defaultThresholds) throws {
        guard !thresholds.isEmpty, thresholds.allSatisfy({ (1...3650).contains($0) }) else {
            throw GatewayError(
                .invalidInput, code: "invalid_alert_days",
                "O365GW_SECRET_ALERT_DAYS must be a comma-separated list of whole days from 1 to 3650, such as 30,14,7,1.")
        }
        self.thresholds = Array(Set(thresholds)).sorted(by: >)
    }

    /// The alert due for a credential expiring at `expiresAt`, or nil when none is: the stage names the smallest
    /// threshold already crossed (`7d`: at most 7 days left), or `expired:YYYY-MM-DD` (one per UTC day once expired).
    /// Crossing several thresholds at once (a tenant onboarded 5 days before expiry) gives one alert, for the
    /// smallest.
    public func stage(expiresAt: Date, now: Date) -> ExpiryAlertStage? {
        let seconds = expiresAt.timeIntervalSince(now)
        if seconds <= 0 {
            return ExpiryAlertStage(name: "expired:" + String(RFC3339.format(now).prefix(10)), expired: true)
        }
        guard let threshold = thresholds.last(where: { seconds <= Double($0) * 86_400 }) else { return nil }
        return ExpiryAlertStage(name: "\(threshold)d", expired: false)
    }
}

public struct ExpiryAlertStage: Sendable, Equatable {
    /// `30d`, `7d`, `expired:2026-12-02`: unique per credential, so it is sent once.
    public var name: String
    public var expired: Bool

    public var code: String { expired ? "secret_expired" : "secret_expiring" }
}

/// An alert to send (or sent): one stage of one tenant's credential.
public struct ExpiryAlert: Sendable, Equatable {
    public var id: Int64
    public var tenant: TenantID
    public var tenantName: String
    public var microsoftTenantID: UUID
    public var clientID: UUID
    public var stage: String
    public var code: String
    public var expiresAt: Date
    public var source: SecretExpirySource
    public var advice: String
    /// Whether each destination still needs it.
    public var utmstackPending: Bool
    public var webhookPending: Bool
    public var attempts: Int

    public init(
        id: Int64, tenant: TenantID, tenantName: String, microsoftTenantID: UUID, clientID: UUID, stage: String,
        code: String, expiresAt: Date, source: SecretExpirySource, advice: String, utmstackPending: Bool,
        webhookPending: Bool, attempts: Int
    ) {
        self.id = id
        self.tenant = tenant
        self.tenantName = tenantName
        self.microsoftTenantID = microsoftTenantID
        self.clientID = clientID
        self.stage = stage
        self.code = code
        self.expiresAt = expiresAt
        self.source = source
        self.advice = advice
        self.utmstackPending = utmstackPending
        self.webhookPending = webhookPending
        self.attempts = attempts
    }

    /// Whole days left (negative once expired) at `now`.
    public func daysLeft(now: Date) -> Int { Int((expiresAt.timeIntervalSince(now) / 86_400).rounded(.down)) }

    /// One line a person reads in a chat channel or a SIEM.
    public func text(now: Date) -> String {
        let days = daysLeft(now: now)
        let when = code == "secret_expired"
            ? "expired on \(RFC3339.format(expiresAt).prefix(10))"
            : "expires in \(max(0, days)) day(s), on \(RFC3339.format(expiresAt).prefix(10))"
        return "o365-gateway: the Microsoft 365 credential of tenant \"\(tenantName)\" \(when) (source: \(source.rawValue)). \(advice)"
    }

    public var problem: IntegrationProblem {
        IntegrationProblem(tenant: tenant, tenantName: tenantName, code: code, advice: advice)
    }
}
