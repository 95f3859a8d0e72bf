import CredentialCrypto
import Foundation
import GatewayCore
import PostgresStorage
import Testing
import UTMStackForwarder
import UTMStackReceiver

@testable import GatewayApp

@Suite(.timeLimit(.minutes(2))) struct SecretExpiryWatcherTests {
    @Test func expiringAndExpiredSecretsAreNotifiedToUTMStack() async throws {
        let db = try await TestDatabase.create("watch")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        try await withReceiver(path: path, received: received) {
            try await TestDatabase.withClient(db) { database in
                let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
                let now = Date()
                var soon = newTenant()
                soon.name = "Soon"
                soon.secretExpiresAt = now.addingTimeInterval(3 * 86_400 + 60)
                var gone = newTenant()
                gone.name = "Gone"
                gone.secretExpiresAt = now.addingTimeInterval(-86_400)
                var fine = newTenant()
                fine.name = "Fine"
                fine.secretExpiresAt = now.addingTimeInterval(90 * 86_400)
                for tenant in [soon, gone, fine] { _ = try await store.create(tenant) }
                let watcher = SecretExpiryWatcher(
                    store: store, reporter: EngineNotifier(endpoint: .engineSocket(path: path), logger: quietLogger),
                    withinDays: 14, interval: .seconds(3600), logger: quietLogger)
                try await watcher.checkOnce(now: now)
            }
        }
        let bodies = received.snapshot.messages.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.message.utf8))) as? [String: String]
        }
        #expect(received.snapshot.messages.allSatisfy { $0.topic == "integration_failure" })
        #expect(Set(bodies.map { "\($0["tenantName"]!):\($0["code"]!)" }) == ["Soon:secret_expiring", "Gone:secret_expired"])
        #expect(bodies.allSatisfy { $0["advice"]?.contains("PUT /api/v1/tenants/") == true })
    }
}
