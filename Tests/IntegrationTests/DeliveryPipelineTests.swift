import ActivityAPI
@testable import Collection
import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import PostgresStorage
import Scheduling
import Testing
import UTMStackForwarder

/// The ordered tail of a poll against PostgreSQL and a forwarder whose UTMStack never answers: a blob is
/// remembered only once UTMStack acknowledged it and every blob before it.
@Suite(.timeLimit(.minutes(2))) struct DeliveryPipelineTests {
    /// Reproduces a loss: a blob that forwards nothing (skipped because Microsoft says it is gone, or every record
    /// forwarded before) got a ticket that is "delivered from the start", and the commit took every blob before it
    /// as delivered too, so a crash before UTMStack's acknowledgement lost their records.
    @Test(arguments: ["skipped", "duplicates only"])
    func aBlobForwardingNothingDoesNotCommitTheUnacknowledgedBlobsBeforeIt(_ kind: String) async throws {
        let db = try await TestDatabase.create("pipeline")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await TestDatabase.withClient(db) { database in
            let tenants = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
            let store = PostgresCollectionStore(database: database, logger: quietLogger)
            let tenant = try await tenants.create(newTenant())
            try await store.syncUnits()
            let free = PostgresCollectionStore.LeaseKey(tenant: tenant.id, contentType: .exchange, fencing: 0)
            let lease = try #require(try await store.acquire([free], owner: "a", ttl: 60).first?.key)
            // No engine listens: what is submitted is held, never acknowledged.
            let forwarder = UTMStackForwarder(
                configuration: .init(endpoint: .engineSocket(path: "/nonexistent/engine.sock")),
                deadLetters: MemoryDeadLetterStore(), logger: quietLogger)
            var pipeline = DeliveryPipeline(
                unit: CollectionUnit(tenant: tenant.id, contentType: .exchange), fencing: lease.fencing, store: store,
                forwarder: forwarder)
            let route = TenantRoute(tenant)
            let record = AuditRecord(id: "r1", creationTime: "2026-12-01T10:00:00", raw: #"{"Id":"r1","CreationTime":"2026-12-01T10:00:00"}"#)
            func blob(_ id: String) -> ContentBlob {
                ContentBlob(
                    contentType: "Audit.Exchange", contentID: id, contentURI: "https://manage.office.com/\(id)",
                    contentCreated: "2026-12-01T10:00:00.000Z", contentExpiration: "2026-12-08T10:00:00.000Z")
            }
            let memory = ResponseMemoryBudget(limit: 1 << 20)
            func fetched(_ outcome: BlobOutcome) -> Collector.FetchedBlob {
                var fetched = Collector.FetchedBlob(outcome: outcome, claim: memory.claim())
                if case .records = outcome { fetched.hashes = [Collector.hash(record.id)] }
                return fetched
            }
            #expect(try await pipeline.submit(blob: blob("a"), created: Date(), fetched: fetched(.records([record])), route: route))
            let second: BlobOutcome = kind == "skipped" ? .skipped(reason: "expired") : .records([record])
            #expect(try await pipeline.submit(blob: blob("b"), created: Date(), fetched: fetched(second), route: route))
            #expect(try await pipeline.commitDelivered(keepingAtMost: 5))
            #expect(try await store.forwardedContent(tenant: tenant.id, ids: ["a", "b"]).isEmpty, "nothing was acknowledged")
            #expect(try await store.forwardedRecords(tenant: tenant.id, contentType: .exchange, fencing: lease.fencing, hashes: [Collector.hash("r1")]) == [])
        }
    }
}
