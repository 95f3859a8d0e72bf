import Foundation

/// The tenant registry. Implemented by PostgreSQL; every write is one transaction.
public protocol TenantStore: Sendable {
    /// Stores a new tenant with its credential sealed. Throws `tenant_exists` (conflict) on a duplicate
    /// Microsoft tenant id.
    func create(_ tenant: NewTenant) async throws -> Tenant
    func list() async throws -> [Tenant]
    func get(_ id: TenantID) async throws -> Tenant?
    /// Applies `changes`; when `precondition` does not allow the current version, throws `version_mismatch`.
    func update(_ id: TenantID, _ changes: TenantChanges, precondition: VersionPrecondition?) async throws -> Tenant
    /// Replaces the credential (secret rotation).
    func replaceCredential(
        _ id: TenantID, _ credential: Credential, secretExpiresAt: Date?, precondition: VersionPrecondition?
    ) async throws -> Tenant
    /// Deletes the tenant and destroys its sealed credential.
    func delete(_ id: TenantID, precondition: VersionPrecondition?) async throws
    /// Unseals the tenant's credential for a call to Microsoft.
    func credential(of id: TenantID) async throws -> Credential
    /// A value that changes whenever a tenant is created, changed (its credential too) or deleted, or a destination
    /// takes a new generation (a tenant read carries its destination's): what lets a replica keep tenants and
    /// credentials between polls and read them again only after a change.
    func changeStamp() async throws -> TenantChangeStamp
}

/// The stored UTMStack destinations (docs/destinations.md); `default` is the configuration's and not here.
public protocol DestinationStore: Sendable {
    /// Throws `destination_exists` (conflict) when the name is taken.
    func create(_ name: String, _ settings: DestinationSettings) async throws -> Destination
    func list() async throws -> [Destination]
    func get(_ name: String) async throws -> Destination?
    func update(_ name: String, _ changes: DestinationChanges, precondition: VersionPrecondition?) async throws -> Destination
    /// Throws `destination_in_use` (conflict) while a tenant names it.
    func delete(_ name: String, precondition: VersionPrecondition?) async throws
    /// The tenants that send to the destination (`default` included).
    func tenants(of name: String) async throws -> [TenantID]
    /// Every stored destination with its generation, endpoint and connection key (unsealed, for its forwarder
    /// only), each destination read in one statement so that a key never meets another generation's endpoint.
    func forwardingDestinations() async throws -> [ForwardingDestination]
}

/// The registry's state in three numbers: how many tenants, which ones (a sum of hashes of their ids, and of the
/// destinations' names with their generations: a create, a delete or a destination's change moves it, whatever
/// else happened) and the sum of their versions (every write adds one, so a round of updates alone raises it).
public struct TenantChangeStamp: Sendable, Hashable {
    public var count: Int64
    public var members: Int64
    public var versions: Int64

    public init(count: Int64, members: Int64, versions: Int64) {
        self.count = count
        self.members = members
        self.versions = versions
    }
}

/// A write's `If-Match` precondition: the versions it accepts (RFC 9110 §13.1.1: a list of entity tags compared
/// strongly). A list naming no current version (weak tags, other forms) allows none: the write answers 412.
public struct VersionPrecondition: Sendable, Equatable {
    public var versions: Set<Int64>

    public init(_ versions: Set<Int64>) { self.versions = versions }

    public func allows(_ version: Int64) -> Bool { versions.contains(version) }
}

/// Answers whether the gateway can serve: the database is reachable and its schema is current.
public protocol ReadinessCheck: Sendable {
    /// Returns nil when ready, else a sentence saying why not.
    func notReadyReason() async -> String?
}

/// One check of `POST /api/v1/tenants/{id}/validate`.
public struct ValidationCheck: Sendable, Equatable {
    public var name: String
    public var ok: Bool
    public var code: String?
    public var advice: String?

    public init(name: String, ok: Bool, code: String? = nil, advice: String? = nil) {
        self.name = name
        self.ok = ok
        self.code = code
        self.advice = advice
    }
}

/// Tests a tenant's credentials against Microsoft now: token, permissions, subscriptions.
public protocol CredentialValidator: Sendable {
    func validate(_ tenant: Tenant, credential: Credential) async -> [ValidationCheck]
}

/// Keeps what Microsoft says of a tenant's credential: the end date Graph shows, and its refusal of an expired secret.
public protocol SecretExpiryRecorder: Sendable {
    /// Stores a Graph lookup's finding, unless the credential changed since (`generation`).
    func recordGraphFinding(_ finding: GraphExpiryFinding, tenant: TenantID, generation: Int64) async throws
    /// Microsoft refused the secret as expired (AADSTS7000222) at `date`; held until it issues a token again.
    func recordRefusal(_ tenant: TenantID, at date: Date) async throws
    /// Microsoft issued a token with the tenant's credential: an earlier refusal no longer holds.
    func clearRefusal(_ tenant: TenantID) async throws
}
