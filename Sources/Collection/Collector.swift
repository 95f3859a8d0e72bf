import ActivityAPI
import Crypto
import Foundation
import GatewayCore
import PostgresStorage
import Scheduling
import UTMStackForwarder

/// Tunables of collection (docs/collection.md).
public struct CollectionSettings: Sendable {
    public var pollInterval: Duration
    public var backfill: TimeInterval
    public var trailingRelist: TimeInterval
    public var workers: Int
    public var leaseTTL: TimeInterval
    public var tick: Duration
    public var blobConcurrency: Int

    public init(
        pollInterval: Duration = .seconds(60), backfill: TimeInterval = 24 * 3600, trailingRelist: TimeInterval = 3600,
        workers: Int = 32, leaseTTL: TimeInterval = 20, tick: Duration = .seconds(5), blobConcurrency: Int = 4
    ) {
        self.pollInterval = pollInterval
        self.backfill = min(backfill, 7 * 24 * 3600)
        self.trailingRelist = trailingRelist
        self.workers = workers
        self.leaseTTL = leaseTTL
        self.tick = tick
        self.blobConcurrency = blobConcurrency
    }
}

/// Moves one unit's data from Microsoft to UTMStack: plan windows from the checkpoint, list, skip blobs already
/// forwarded, fetch, drop records already forwarded, forward, and only after UTMStack acknowledged everything,
/// remember the blobs and move the checkpoint (guarded by the fencing token).
struct Collector: Sendable {
    let unit: CollectionUnit
    let fencing: Int64
    let tenants: any TenantStore
    let store: PostgresCollectionStore
    let microsoft: ActivityClient
    let validator: TenantValidator
    let forwarder: UTMStackForwarder
    let settings: CollectionSettings

    enum Outcome { case done, leaseLost, tenantGone }

    func poll(checkpoint: Date?) async throws -> Outcome {
        guard let tenant = try await tenants.get(unit.tenant), tenant.enabled else { return .tenantGone }
        let auth = validator.auth(tenant, credential: try await tenants.credential(of: unit.tenant))
        let route = TenantRoute(tenant)
        // One start round per tenant covers all its selected types (the 15-minute rule applies per tenant).
        try await microsoft.ensureSubscriptions(auth, tenant.contentTypes)
        let plan = CollectionPlan.make(
            checkpoint: checkpoint, now: Date(), backfill: settings.backfill, trailingRelist: settings.trailingRelist)
        for window in plan.windows {
            let listed = try await microsoft.listContent(auth, unit.contentType, window: window)
            let known = try await store.forwardedContent(tenant: unit.tenant, ids: listed.map(\.contentID))
            var seenInPoll = Set<Int64>()
            var delivered: [PostgresCollectionStore.DeliveredBlob] = []
            var tickets: [DeliveryTicket] = []
            for blob in listed where !known.contains(blob.contentID) {
                let created = RFC3339.parse(blob.contentCreated) ?? window.start
                switch try await microsoft.fetchBlob(auth, blob) {
                case .skipped:
                    delivered.append(.init(contentID: blob.contentID, contentCreated: created, recordHashes: [], forwarded: 0, skipped: true))
                case .records(let records):
                    let hashes = records.map { Self.hash($0.id) }
                    let already = try await store.forwardedRecords(tenant: unit.tenant, hashes: hashes)
                    var logs: [OutboundLog] = []
                    var kept: [Int64] = []
                    for (record, hash) in zip(records, hashes) where !already.contains(hash) && seenInPoll.insert(hash).inserted {
                        logs.append(EventShaper.log(record, route: route, fallbackTimestamp: blob.contentCreated))
                        kept.append(hash)
                    }
                    tickets.append(try await forwarder.submit(logs))
                    delivered.append(.init(contentID: blob.contentID, contentCreated: created, recordHashes: kept, forwarded: logs.count, skipped: false))
                }
            }
            for ticket in tickets { try await forwarder.waitDelivered(ticket) }
            guard try await store.commit(
                tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, blobs: delivered, checkpoint: window.end)
            else { return .leaseLost }
        }
        return .done
    }

    /// The first 8 bytes of SHA-256 of the record id.
    static func hash(_ id: String) -> Int64 {
        let digest = SHA256.hash(data: Array(id.utf8))
        return digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
    }
}
