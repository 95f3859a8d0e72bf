import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import Logging
import MicrosoftSimulator
import PostgresStorage

extension Gateway {
    /// Onboards simulated tenants straight into the registry (the demo).
    @discardableResult
    public static func onboard(
        _ tenants: [SimulatorConfiguration.Tenant], database: DatabaseURL, keyRing: KeyRing,
        destination: @Sendable (Int) -> String = { _ in Destination.defaultName }, logger: Logger
    ) async throws -> [TenantID] {
        try await withDatabase(database, logger: logger) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: keyRing), logger: logger)
            var ids: [TenantID] = []
            for (index, tenant) in tenants.enumerated() {
                guard let secret = tenant.clientSecret else { continue }
                ids.append(try await store.create(NewTenant(
                    name: tenant.name, microsoftTenantID: tenant.tenantId, clientID: tenant.clientId,
                    credential: .clientSecret(Secret(secret)), secretExpiresAt: tenant.secretExpiresAt.flatMap(RFC3339.parse),
                    publisherID: nil, contentTypes: ContentType.allCases, cloud: .commercial,
                    utmTenantID: defaultUTMStackTenantID, dataSource: tenant.name, destination: destination(index))).id)
            }
            return ids
        }
    }

    /// Stores a destination on a local engine socket (the demo's second receiver).
    public static func addSocketDestination(
        _ name: String, socketPath: String, database: DatabaseURL, keyRing: KeyRing, logger: Logger
    ) async throws {
        try await withDatabase(database, logger: logger) { database in
            let store = PostgresDestinationStore(
                database: database, sealer: CredentialSealer(keyRing: keyRing),
                policy: DestinationPolicy(socketDirectories: [DestinationPolicy.directory(of: socketPath)]), logger: logger)
            _ = try await store.create(name, DestinationSettings(endpoint: .socket(path: socketPath)))
        }
    }
}
