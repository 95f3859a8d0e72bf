@testable import Collection
import Crypto
import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import Logging
import PostgresNIO
import PostgresStorage
import Synchronization
import Testing

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

func newTenant(secret: String = "Secret~value.0123456789abcdefghijkl") -> NewTenant {
    NewTenant(
        name: "Fabrikam", microsoftTenantID: UUID(), clientID: UUID(), credential: .clientSecret(Secret(secret)),
        secretExpiresAt: nil, publisherID: nil, contentTypes: ContentType.allCases, cloud: .commercial,
        utmTenantID: defaultUTMStackTenantID, dataSource: "Fabrikam")
}

@Suite(.timeLimit(.minutes(2))) struct MigrationIntegrationTests {
    @Test func migrateIsIdempotentAndRecordsChecksums() async throws {
        let db = try await TestDatabase.create("mig")
        let first = try await Gateway.migrate(db, logger: quietLogger)
        #expect(first.map(\.version) == Migration.embedded.map(\.version))
        let second = try await Gateway.migrate(db, logger: quietLogger)
        #expect(second.isEmpty)
        let rows = try await TestDatabase.withClient(db) { database in
            try await database.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
                .decode((Int, String).self).map { "\($0.0):\($0.1)" }
        }
        #expect(rows == Migration.embedded.map { "\($0.version):\($0.checksum)" })
    }

    @Test func concurrentMigrationsApplyEachVersionOnce() async throws {
        let db = try await TestDatabase.create("mig")
        async let a = Gateway.migrate(db, logger: quietLogger)
        async let b = Gateway.migrate(db, logger: quietLogger)
        let applied = try await a.count + b.count
        #expect(applied == Migration.embedded.count)
    }

    @Test func aChangedMigrationFileIsRefused() async throws {
        let db = try await TestDatabase.create("mig")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        var edited = Migration.embedded
        edited[0] = Migration(version: edited[0].version, name: edited[0].name, sql: edited[0].sql + "\n-- edited\n")
        let migrations = edited
        await #expect { try await TestDatabase.withClient(db) { database in
            try await Migrator(database: database, migrations: migrations, logger: quietLogger).migrate()
        } } throws: { ($0 as? GatewayError)?.code == "migration_modified" }
    }

    @Test func serveRefusesAnOutdatedSchema() async throws {
        let db = try await TestDatabase.create("mig")
        let configuration = try GatewayConfiguration(
            database: db, keyRing: .random(), adminToken: Secret("0123456789abcdef0123"),
            listen: ListenAddress(host: "127.0.0.1", port: 0))
        await #expect { try await Gateway.serve(configuration, metrics: .init(), logger: quietLogger) } throws: {
            let error = $0 as? GatewayError
            return error?.code == "schema_outdated" && error?.message.contains("o365-gateway migrate") == true
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct TenantStoreIntegrationTests {
    func withStore(
        keyRing: KeyRing = .random(),
        _ body: @escaping @Sendable (PostgresTenantStore, Database) async throws -> Void
    ) async throws {
        let db = try await TestDatabase.create("store")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await TestDatabase.withClient(db) { database in
            try await body(PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: keyRing), logger: quietLogger), database)
        }
    }

    @Test func credentialsRoundTripAndAreBoundToTheirRow() async throws {
        try await withStore { store, client in
            let a = try await store.create(newTenant(secret: "Secret~A.0123456789abcdefghijkl"))
            let b = try await store.create(newTenant(secret: "Secret~B.0123456789abcdefghijkl"))
            #expect(try await store.credential(of: a.id) == .clientSecret(Secret("Secret~A.0123456789abcdefghijkl")))
            // Copy A's sealed box onto B's row: it must not open as B's credential.
            try await client.query(
                """
                UPDATE tenants SET credential_box = (SELECT credential_box FROM tenants WHERE id = \(a.id.uuid))
                WHERE id = \(b.id.uuid)
                """)
            await #expect { try await store.credential(of: b.id) } throws: {
                ($0 as? GatewayError)?.code == "credential_unreadable"
            }
        }
    }

    @Test func updatesAreVersionedAndDeleteDestroysTheCredential() async throws {
        try await withStore { store, client in
            let tenant = try await store.create(newTenant())
            let updated = try await store.update(
                tenant.id, TenantChanges(contentTypes: [.exchange], enabled: false), precondition: VersionPrecondition([1]))
            #expect(updated.version == 2 && updated.contentTypes == [.exchange] && !updated.enabled)
            #expect(updated.name == tenant.name)
            await #expect { try await store.update(tenant.id, TenantChanges(enabled: true), precondition: VersionPrecondition([1])) } throws: {
                ($0 as? GatewayError)?.code == "version_mismatch"
            }
            try await store.delete(tenant.id, precondition: nil)
            #expect(try await store.get(tenant.id) == nil)
            let remaining = try await client.query("SELECT count(*) FROM tenants").decode(Int.self).first
            #expect(remaining == 0)
            await #expect { try await store.credential(of: tenant.id) } throws: {
                ($0 as? GatewayError)?.code == "tenant_not_found"
            }
        }
    }

    /// Polls keep tenants and credentials between polls (`TenantCache`); what an operator changes must reach them
    /// at the next lease round: every kind of write moves the stamp, and a moved stamp drops what was kept.
    @Test func everyWriteMovesTheChangeStampAndTheCacheFollowsIt() async throws {
        try await withStore { store, _ in
            let cache = TenantCache(store: store)
            var stamps = [try await cache.refresh()]
            let tenant = try await store.create(newTenant(secret: "Secret~A.0123456789abcdefghijkl"))
            stamps.append(try await cache.refresh())
            #expect(try await cache.tenant(tenant.id)?.enabled == true)
            #expect(try await cache.credential(of: tenant.id) == .clientSecret(Secret("Secret~A.0123456789abcdefghijkl")))

            _ = try await store.update(tenant.id, TenantChanges(enabled: false), precondition: nil)
            #expect(try await cache.tenant(tenant.id)?.enabled == true, "kept until the next round")
            stamps.append(try await cache.refresh())
            #expect(try await cache.tenant(tenant.id)?.enabled == false)

            _ = try await store.replaceCredential(
                tenant.id, .clientSecret(Secret("Secret~B.0123456789abcdefghijkl")), secretExpiresAt: nil, precondition: nil)
            stamps.append(try await cache.refresh())
            #expect(try await cache.credential(of: tenant.id) == .clientSecret(Secret("Secret~B.0123456789abcdefghijkl")))

            // A create and a delete in one round leave the count as it was; which tenants there are still moves.
            let other = try await store.create(newTenant())
            try await store.delete(tenant.id, precondition: nil)
            stamps.append(try await cache.refresh())
            #expect(try await cache.tenant(tenant.id) == nil)
            #expect(try await cache.tenant(other.id) != nil)
            #expect(Set(stamps).count == stamps.count, "\(stamps)")
            #expect(try await cache.refresh() == stamps.last, "no write, no change")
        }
    }

    /// At a start the five units of a tenant are polled at once: their misses share one read of the tenant and one
    /// of its credential (it was ten statements per tenant).
    @Test func concurrentMissesOfATenantShareOneRead() async throws {
        try await withStore { store, _ in
            let counting = CountingTenantStore(store)
            let cache = TenantCache(store: counting)
            let tenant = try await store.create(newTenant())
            try await cache.refresh()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        #expect(try await cache.tenant(tenant.id)?.id == tenant.id)
                        _ = try await cache.credential(of: tenant.id)
                    }
                }
                try await group.waitForAll()
            }
            #expect(counting.reads == ["get": 1, "credential": 1])
            _ = try await store.update(tenant.id, TenantChanges(enabled: false), precondition: nil)
            try await cache.refresh()
            #expect(try await cache.tenant(tenant.id)?.enabled == false)
            #expect(counting.reads["get"] == 2, "a moved stamp reads again")
        }
    }

    @Test func resealingMovesEveryCredentialToTheActiveKey() async throws {
        let oldKey = SymmetricKey(size: .bits256)
        let oldRing = KeyRing(activeKeyID: "old", keys: ["old": oldKey])
        let db = try await TestDatabase.create("store")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        let secrets = (0..<5).map { "Secret~\($0).0123456789abcdefghijkl" }
        let ids = try await TestDatabase.withClient(db) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: oldRing), logger: quietLogger)
            var ids: [TenantID] = []
            for secret in secrets { ids.append(try await store.create(newTenant(secret: secret)).id) }
            _ = try await PostgresDestinationStore(
                database: database, sealer: CredentialSealer(keyRing: oldRing), policy: .defaultFor(socket: "/s/engine.sock"), logger: quietLogger)
                .create("eu", DestinationSettings(
                    endpoint: .network(host: "utm.example.net", port: 9000, serverName: nil, caPEM: nil), connectionKey: Secret("federation-key-1")))
            return ids
        }
        let newKey = SymmetricKey(size: .bits256)
        let newRing = KeyRing(activeKeyID: "new", keys: ["new": newKey, "old": oldKey])
        let report = try await Gateway.reseal(db, keyRing: newRing, logger: quietLogger)
        #expect(report.resealed == 6 && report.byKey == ["new": 6], "5 credentials and 1 connection key")
        #expect(try await Gateway.reseal(db, keyRing: newRing, logger: quietLogger).resealed == 0)
        // Without the old key, every credential still opens.
        let newOnly = KeyRing(activeKeyID: "new", keys: ["new": newKey])
        try await TestDatabase.withClient(db) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: newOnly), logger: quietLogger)
            for (id, secret) in zip(ids, secrets) {
                let credential = try await store.credential(of: id)
                #expect(credential == .clientSecret(Secret(secret)))
            }
            let destinations = PostgresDestinationStore(
                database: database, sealer: CredentialSealer(keyRing: newOnly), policy: .defaultFor(socket: "/s/engine.sock"), logger: quietLogger)
            #expect(try await destinations.forwardingDestinations().first?.settings.get().connectionKey == Secret("federation-key-1"))
        }
    }
}

/// A tenant store that counts the reads polls make.
final class CountingTenantStore: TenantStore {
    let base: any TenantStore
    private let counts = Mutex([String: Int]())
    var reads: [String: Int] { counts.withLock { $0 } }

    init(_ base: any TenantStore) { self.base = base }

    private func count(_ name: String) { counts.withLock { $0[name, default: 0] += 1 } }

    func create(_ tenant: NewTenant) async throws -> Tenant { try await base.create(tenant) }
    func list() async throws -> [Tenant] { try await base.list() }
    func get(_ id: TenantID) async throws -> Tenant? {
        count("get")
        try await Task.sleep(for: .milliseconds(50))  // long enough for the other misses to arrive meanwhile
        return try await base.get(id)
    }
    func update(_ id: TenantID, _ changes: TenantChanges, precondition: VersionPrecondition?) async throws -> Tenant {
        try await base.update(id, changes, precondition: precondition)
    }
    func replaceCredential(
        _ id: TenantID, _ credential: Credential, secretExpiresAt: Date?, precondition: VersionPrecondition?
    ) async throws -> Tenant {
        try await base.replaceCredential(id, credential, secretExpiresAt: secretExpiresAt, precondition: precondition)
    }
    func delete(_ id: TenantID, precondition: VersionPrecondition?) async throws { try await base.delete(id, precondition: precondition) }
    func credential(of id: TenantID) async throws -> Credential {
        count("credential")
        return try await base.credential(of: id)
    }
    func changeStamp() async throws -> TenantChangeStamp { try await base.changeStamp() }
}
