import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import Logging
import MicrosoftSimulator
import PostgresStorage

extension Gateway {
    /// Onboards simulated tenants straight into the registry (the demo).
    public static func onboard(
        _ tenants: [SimulatorConfiguration.Tenant], database: DatabaseURL, keyRing: KeyRing, logger: Logger
    ) async throws {
        try await withDatabase(database, logger: logger) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: keyRing), logger: logger)
            for tenant in tenants {
                guard let secret = tenant.clientSecret else { continue }
                _ = try await store.create(NewTenant(
                    name: tenant.name, microsoftTenantID: tenant.tenantId, clientID: tenant.clientId,
                    credential: .clientSecret(Secret(secret)), secretExpiresAt: tenant.secretExpiresAt.flatMap(RFC3339.parse),
                    publisherID: nil, contentTypes: ContentType.allCases, cloud: .commercial,
                    utmTenantID: defaultUTMStackTenantID, dataSource: tenant.name))
            }
        }
    }
}
