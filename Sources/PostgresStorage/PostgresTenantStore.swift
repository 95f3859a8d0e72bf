import CredentialCrypto
import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// The tenant registry in PostgreSQL. Credentials are sealed before they reach SQL and opened only on demand.
public struct PostgresTenantStore: TenantStore {
    let database: Database
    let sealer: CredentialSealer
    let logger: Logger

    public init(database: Database, sealer: CredentialSealer, logger: Logger) {
        self.database = database
        self.sealer = sealer
        self.logger = logger
    }

    static let columns = """
        id, name, ms_tenant_id, client_id, cloud, content_types, publisher_id, utm_tenant_id, data_source, enabled,
        credential_kind, secret_expires_at, graph_outcome, graph_expires_at, graph_checked_at, secret_refused_at,
        credential_generation, created_at, updated_at, version, destination,
        (SELECT generation FROM destinations WHERE destinations.name = tenants.destination) AS destination_generation
        """

    public func create(_ new: NewTenant) async throws -> Tenant {
        let id = TenantID()
        let sealed = try sealer.seal(new.credential, for: id)
        let contentTypes = new.contentTypes.map(\.rawValue)
        let query: PostgresQuery = try """
            INSERT INTO tenants (id, name, ms_tenant_id, client_id, cloud, content_types, publisher_id, utm_tenant_id,
                data_source, credential_kind, credential_key_id, credential_box, secret_expires_at,
                secret_expiry_source, destination)
            VALUES (\(id.uuid), \(new.name), \(new.microsoftTenantID), \(new.clientID), \(new.cloud.rawValue),
                \(contentTypes), \(new.publisherID), \(new.utmTenantID), \(new.dataSource),
                \(new.credential.kind.rawValue), \(sealed.keyID), \(sealed.box), \(new.secretExpiresAt),
                \(new.secretExpiresAt == nil ? nil : SecretExpirySource.onboarding.rawValue), \(new.destination))
            ON CONFLICT (ms_tenant_id) DO NOTHING
            RETURNING \(unescaped: Self.columns)
            """
        let rows: [PostgresRow]
        if new.destination == Destination.defaultName {
            rows = try await database.query(query)
        } else {
            // The destination is locked until the tenant exists, so that it cannot be deleted meanwhile.
            rows = try await database.transaction { [destination = new.destination] tx in
                try await PostgresDestinationStore.requireExisting(tx, destination)
                return try await tx.query(query)
            }
        }
        guard let tenant = try rows.map(Tenant.init(row:)).first else {
            throw GatewayError(
                .conflict, code: "tenant_exists",
                "The Microsoft tenant \(new.microsoftTenantID.uuidString.lowercased()) is already onboarded; "
                    + "find it with GET /api/v1/tenants and change it with PATCH instead.")
        }
        logger.info("tenant onboarded", metadata: ["tenant": "\(tenant.id)", "keyId": "\(sealed.keyID)"])
        return tenant
    }

    public func list() async throws -> [Tenant] {
        try await Self.list(in: database)
    }

    /// Every tenant, without opening a credential (no keys needed: the shell's reports read this).
    public static func list(in database: Database) async throws -> [Tenant] {
        try await database.query("SELECT \(unescaped: columns) FROM tenants ORDER BY lower(name), id")
            .map(Tenant.init(row:))
    }

    public func get(_ id: TenantID) async throws -> Tenant? {
        try await database.query("SELECT \(unescaped: Self.columns) FROM tenants WHERE id = \(id.uuid)")
            .map(Tenant.init(row:)).first
    }

    public func update(_ id: TenantID, _ changes: TenantChanges, precondition: VersionPrecondition?) async throws -> Tenant {
        let contentTypes = changes.contentTypes?.map(\.rawValue)
        return try await writeExisting(id, precondition: precondition) { tx in
            if let destination = changes.destination { try await PostgresDestinationStore.requireExisting(tx, destination) }
            return try await tx.query(
                """
                UPDATE tenants SET
                    name = COALESCE(\(changes.name), name),
                    content_types = COALESCE(\(contentTypes)::text[], content_types),
                    enabled = COALESCE(\(changes.enabled), enabled),
                    publisher_id = COALESCE(\(changes.publisherID), publisher_id),
                    utm_tenant_id = COALESCE(\(changes.utmTenantID), utm_tenant_id),
                    data_source = COALESCE(\(changes.dataSource), data_source),
                    destination = COALESCE(\(changes.destination), destination),
                    version = version + 1,
                    updated_at = now()
                WHERE id = \(id.uuid)
                RETURNING \(unescaped: Self.columns)
                """
            ).map(Tenant.init(row:))
        }
    }

    public func replaceCredential(
        _ id: TenantID, _ credential: Credential, secretExpiresAt: Date?, precondition: VersionPrecondition?
    ) async throws -> Tenant {
        let sealed = try sealer.seal(credential, for: id)
        let tenant = try await writeExisting(id, precondition: precondition) { tx in
            try await tx.query(
                """
                UPDATE tenants SET
                    credential_kind = \(credential.kind.rawValue),
                    credential_key_id = \(sealed.keyID),
                    credential_box = \(sealed.box),
                    secret_expires_at = \(secretExpiresAt),
                    secret_expiry_source = \(secretExpiresAt == nil ? nil : SecretExpirySource.onboarding.rawValue),
                    -- A new credential: what Graph and the token endpoint said of the old one no longer holds.
                    credential_generation = credential_generation + 1,
                    graph_outcome = NULL, graph_expires_at = NULL, graph_checked_at = NULL, secret_refused_at = NULL,
                    version = version + 1,
                    updated_at = now()
                WHERE id = \(id.uuid)
                RETURNING \(unescaped: Self.columns)
                """
            ).map(Tenant.init(row:))
        }
        logger.info("tenant secret rotated", metadata: ["tenant": "\(id)", "keyId": "\(sealed.keyID)"])
        return tenant
    }

    public func delete(_ id: TenantID, precondition: VersionPrecondition?) async throws {
        _ = try await database.transaction { tx in
            try await Self.lockAndCheck(tx, id, precondition: precondition)
            try await tx.query("DELETE FROM tenants WHERE id = \(id.uuid)")
        }
        logger.info("tenant deleted", metadata: ["tenant": "\(id)"])
    }

    public func credential(of id: TenantID) async throws -> Credential {
        let rows = try await database.query("SELECT credential_key_id, credential_box FROM tenants WHERE id = \(id.uuid)")
        for (keyID, box) in try rows.decode((String, Data).self) {
            return try sealer.open(SealedCredential(keyID: keyID, box: box), for: id)
        }
        throw GatewayError.tenantNotFound("\(id)")
    }

    public func changeStamp() async throws -> TenantChangeStamp {
        let rows = try await database.query(
            """
            SELECT count(*),
                ((COALESCE(sum(hashtextextended(id::text, 0)), 0)
                    + (SELECT COALESCE(sum(hashtextextended(name || ':' || generation, 0)), 0) FROM destinations))
                    % 9223372036854775807)::bigint,
                COALESCE(sum(version), 0)::bigint
            FROM tenants
            """)
        guard let (count, members, versions) = try rows.decode((Int64, Int64, Int64).self).first else {
            return TenantChangeStamp(count: 0, members: 0, versions: 0)
        }
        return TenantChangeStamp(count: count, members: members, versions: versions)
    }

    /// Runs `write` in a transaction after locking the row and checking `precondition`.
    private func writeExisting(
        _ id: TenantID, precondition: VersionPrecondition?,
        _ write: @escaping @Sendable (DatabaseConnection) async throws -> [Tenant]
    ) async throws -> Tenant {
        try await database.transaction { tx in
            try await Self.lockAndCheck(tx, id, precondition: precondition)
            guard let tenant = try await write(tx).first else { throw GatewayError.tenantNotFound("\(id)") }
            return tenant
        }
    }

    private static func lockAndCheck(
        _ tx: DatabaseConnection, _ id: TenantID, precondition: VersionPrecondition?
    ) async throws {
        let current = try await tx.query("SELECT version FROM tenants WHERE id = \(id.uuid) FOR UPDATE").decode(Int64.self).first
        guard let current else { throw GatewayError.tenantNotFound("\(id)") }
        if let precondition, !precondition.allows(current) { throw GatewayError.versionMismatch(current: current) }
    }
}

extension Tenant {
    init(row: PostgresRow) throws {
        let r = row.makeRandomAccess()
        let cloudText = try r["cloud"].decode(String.self)
        let kindText = try r["credential_kind"].decode(String.self)
        guard let cloud = Cloud(rawValue: cloudText), let kind = CredentialKind(rawValue: kindText) else {
            throw GatewayError(.internal, code: "corrupt_row", "A tenant row has an unknown cloud or credential kind.")
        }
        self.init(
            id: TenantID(try r["id"].decode(UUID.self)),
            name: try r["name"].decode(String.self),
            microsoftTenantID: try r["ms_tenant_id"].decode(UUID.self),
            clientID: try r["client_id"].decode(UUID.self),
            cloud: cloud,
            contentTypes: try r["content_types"].decode([String].self).compactMap(ContentType.init(rawValue:)),
            publisherID: try r["publisher_id"].decode(UUID?.self),
            utmTenantID: try r["utm_tenant_id"].decode(String.self),
            dataSource: try r["data_source"].decode(String.self),
            enabled: try r["enabled"].decode(Bool.self),
            credentialKind: kind,
            secretExpiry: SecretExpiryEvidence(
                stated: try r["secret_expires_at"].decode(Date?.self),
                graph: try r["graph_outcome"].decode(String?.self).flatMap(GraphExpiryFinding.Outcome.init).map { outcome in
                    GraphExpiryFinding(
                        outcome: outcome, expiresAt: try r["graph_expires_at"].decode(Date?.self),
                        checkedAt: try r["graph_checked_at"].decode(Date?.self) ?? .distantPast)
                },
                refusedAt: try r["secret_refused_at"].decode(Date?.self)),
            credentialGeneration: try r["credential_generation"].decode(Int64.self),
            createdAt: try r["created_at"].decode(Date.self),
            updatedAt: try r["updated_at"].decode(Date.self),
            version: try r["version"].decode(Int64.self),
            destination: try r["destination"].decode(String.self),
            destinationGeneration: try r["destination_generation"].decode(Int64?.self)
        )
    }
}
