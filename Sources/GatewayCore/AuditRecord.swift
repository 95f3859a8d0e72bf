/// One Office 365 audit record as retrieved from a content blob: its exact bytes (never re-encoded) plus the two
/// fields the gateway needs.
public struct AuditRecord: Sendable, Equatable {
    /// The record's `Id` (a GUID per Microsoft; treated as opaque text).
    public var id: String
    /// The record's `CreationTime` as Microsoft wrote it (UTC, usually without `Z`).
    public var creationTime: String
    /// The record's original JSON text, byte for byte.
    public var raw: String

    public init(id: String, creationTime: String, raw: String) {
        self.id = id
        self.creationTime = creationTime
        self.raw = raw
    }
}

/// Where a tenant's events go in UTMStack.
public struct TenantRoute: Sendable, Equatable {
    public var tenantID: TenantID
    public var utmTenantID: String
    public var dataSource: String

    public init(tenantID: TenantID, utmTenantID: String, dataSource: String) {
        self.tenantID = tenantID
        self.utmTenantID = utmTenantID
        self.dataSource = dataSource
    }

    public init(_ tenant: Tenant) {
        self.init(tenantID: tenant.id, utmTenantID: tenant.utmTenantID, dataSource: tenant.dataSource)
    }
}
