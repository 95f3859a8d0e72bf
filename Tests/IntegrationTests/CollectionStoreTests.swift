import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import PostgresStorage
import Testing

/// The lease and checkpoint statements themselves, against PostgreSQL: the fencing token guards every write.
@Suite(.timeLimit(.minutes(2))) struct CollectionStoreTests {
    @Test func aStaleOwnerCanNeitherRenewNorCommitAfterATakeover() async throws {
        let db = try await TestDatabase.create("store")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await TestDatabase.withClient(db) { database in
            let tenants = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
            let store = PostgresCollectionStore(database: database, logger: quietLogger)
            let tenant = try await tenants.create(newTenant())
            try await store.syncUnits()
            let free = PostgresCollectionStore.LeaseKey(tenant: tenant.id, contentType: .exchange, fencing: 0)
            let won = try #require(try await store.acquire([free], owner: "a", ttl: 0.2).first)
            #expect(won.checkpoint == nil, "a new unit has no checkpoint yet")
            let first = won.key
            #expect(first.fencing == 1)
            #expect(try await store.acquire([free], owner: "b", ttl: 20).isEmpty, "held: nobody else wins it")
            try await Task.sleep(for: .milliseconds(300))
            // A's lease expired; B takes it over and the token grows.
            let second = try #require(try await store.acquire([first], owner: "b", ttl: 20).first?.key)
            #expect(second.fencing == 2)
            let checkpoint = Date(timeIntervalSince1970: 1_800_000_000)
            let blob = PostgresCollectionStore.DeliveredBlob(
                contentID: "blob-1", contentCreated: checkpoint, recordHashes: [42], forwarded: 1, skipped: false)
            // A, stale, is refused everywhere and writes nothing.
            #expect(try await store.renew([first], owner: "a", ttl: 20).isEmpty)
            #expect(try await !store.commit(tenant: tenant.id, contentType: .exchange, fencing: 1, blobs: [blob], checkpoint: checkpoint))
            #expect(try await store.forwardedContent(tenant: tenant.id, ids: ["blob-1"]).isEmpty)
            #expect(try await store.forwardedRecords(tenant: tenant.id, contentType: .exchange, fencing: 1, hashes: [42]) == nil)
            // B, current, commits.
            #expect(try await store.commit(tenant: tenant.id, contentType: .exchange, fencing: 2, blobs: [blob], checkpoint: checkpoint))
            #expect(try await store.forwardedRecords(tenant: tenant.id, contentType: .exchange, fencing: 2, hashes: [42, 43]) == [42])
            let row = try #require(try await store.units(of: tenant.id).first { $0.contentType == .exchange })
            #expect(row.checkpoint == checkpoint && row.owner == "b" && row.recordsForwarded == 1)
            // Whoever wins the lease next gets the checkpoint with it: its first poll does not read it again.
            try await store.release([second], owner: "b")
            let third = try #require(try await store.acquire([second], owner: "c", ttl: 20).first)
            #expect(third.key.fencing == 3 && third.checkpoint == checkpoint)
        }
    }
}
