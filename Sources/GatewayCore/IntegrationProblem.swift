/// A per-tenant problem an operator must act on (authentication failure, disabled subscription, expiring
/// secret), reported to UTMStack and shown in the tenant's status.
public struct IntegrationProblem: Sendable, Equatable {
    public var tenant: TenantID
    public var tenantName: String
    /// Stable code, e.g. `secret_expired`, `subscription_disabled`.
    public var code: String
    /// What to do, in words an admin can act on.
    public var advice: String
    public var contentType: ContentType?

    public init(tenant: TenantID, tenantName: String, code: String, advice: String, contentType: ContentType? = nil) {
        self.tenant = tenant
        self.tenantName = tenantName
        self.code = code
        self.advice = advice
        self.contentType = contentType
    }
}

/// Reports integration problems to the SIEM. Implementations never throw: a lost notification is not lost data.
public protocol ProblemReporter: Sendable {
    func report(_ problem: IntegrationProblem) async
}

/// Where integration problems go: reported (de-duplicated) or delivered now.
public protocol ProblemNotifier: ProblemReporter {
    /// Sends `problem` now and returns once UTMStack acknowledged it; throws when it did not.
    func deliver(_ problem: IntegrationProblem) async throws
}
