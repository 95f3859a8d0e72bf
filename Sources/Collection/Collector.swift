import ActivityAPI
import Crypto
import Foundation
import Logging
import Metrics
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
    /// How long graceful shutdown waits for polls to commit what UTMStack acknowledged.
    public var drainTimeout: Duration
    /// Bytes of fetched blobs held at most before they are forwarded, all collectors together
    /// (`O365GW_BLOB_BUFFER_BYTES`; one blob beyond it may always complete, see ``ResponseMemoryBudget``).
    public var blobBufferBytes: Int
    /// The largest response accepted from Microsoft (`O365GW_MAX_BLOB_BYTES`).
    public var maxBlobBytes: Int

    public init(
        pollInterval: Duration = .seconds(60), backfill: TimeInterval = 24 * 3600, trailingRelist: TimeInterval = 3600,
        workers: Int = 32, leaseTTL: TimeInterval = 20, tick: Duration = .seconds(5), blobConcurrency: Int = 4,
        drainTimeout: Duration = .seconds(15), blobBufferBytes: Int = 32 << 20, maxBlobBytes: Int = AsyncHTTPExchange.defaultMaxBodyBytes
    ) {
        self.pollInterval = pollInterval
        self.backfill = min(backfill, 7 * 24 * 3600)
        self.trailingRelist = trailingRelist
        self.workers = workers
        self.leaseTTL = leaseTTL
        self.tick = tick
        self.blobConcurrency = blobConcurrency
        self.drainTimeout = drainTimeout
        self.blobBufferBytes = blobBufferBytes
        self.maxBlobBytes = maxBlobBytes
    }
}

/// Moves one unit's data from Microsoft to UTMStack: plan windows from the checkpoint, list, skip blobs already
/// forwarded, fetch blobs with bounded concurrency, drop records already forwarded, forward in listing order, and
/// remember each blob and its records as soon as UTMStack acknowledged them (so a crash re-forwards at most what
/// was in flight). The checkpoint moves to a window's end only when every blob of the window is remembered; every
/// write is guarded by the fencing token.
struct Collector: Sendable {
    let unit: CollectionUnit
    let fencing: Int64
    let tenants: TenantCache
    let store: PostgresCollectionStore
    let microsoft: ActivityClient
    let validator: TenantValidator
    let forwarder: UTMStackForwarder
    /// Fetched blobs count here until they are handed to the forwarder.
    let memory: ResponseMemoryBudget
    let settings: CollectionSettings
    let logger: Logger
    /// False once this replica should stop the unit (lease handed over, tenant gone, shutting down); checked
    /// between blobs.
    let shouldContinue: @Sendable () -> Bool

    enum Outcome: Equatable { case done, leaseLost, tenantGone, stopped }

    /// Collects from `checkpoint` (the unit's stored one) up to now. Returns how it ended and the checkpoint it
    /// committed last (the next poll of this lease starts there without reading it again).
    func poll(checkpoint: Date?) async throws -> (Outcome, checkpoint: Date?) {
        guard let tenant = try await tenants.tenant(unit.tenant), tenant.enabled, tenant.contentTypes.contains(unit.contentType)
        else { return (.tenantGone, checkpoint) }
        let auth = validator.auth(tenant, credential: try await tenants.credential(of: unit.tenant))
        let route = TenantRoute(tenant)
        // One start round per tenant covers all its selected types (the 15-minute rule applies per tenant).
        try await microsoft.ensureSubscriptions(auth, tenant.contentTypes)
        let plan = CollectionPlan.make(
            checkpoint: checkpoint, now: Date(), backfill: settings.backfill, trailingRelist: settings.trailingRelist)
        if let gap = plan.gap {
            // Paused (or failing) for longer than Microsoft keeps content: what lies before its 7 days is gone.
            Metrics.gaps.increment()
            logger.warning(
                "collection gap: Microsoft no longer lists this period; collection resumes after it",
                metadata: ["unit": "\(unit)", "from": "\(gap.start)", "until": "\(gap.end)"])
        }
        var committed = checkpoint
        for window in plan.windows {
            let listed = try await microsoft.listContent(auth, unit.contentType, window: window)
            let known = try await store.forwardedContent(tenant: unit.tenant, ids: listed.map(\.contentID))
            let pending = listed.filter { !known.contains($0.contentID) }
            let outcome = try await forward(pending, auth: auth, route: route, windowStart: window.start)
            guard outcome == .done else { return (outcome, committed) }
            guard try await store.commit(
                tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, blobs: [], checkpoint: window.end)
            else { return (.leaseLost, committed) }
            committed = window.end
        }
        return (.done, committed)
    }

    /// Fetches up to `blobConcurrency` blobs ahead, forwards them in listing order, and commits delivered blobs as
    /// their acknowledgements arrive. On any error it first commits what was submitted (waiting for UTMStack), so a
    /// retry never forwards those records again, then rethrows.
    private func forward(_ blobs: [ContentBlob], auth: TenantAuth, route: TenantRoute, windowStart: Date) async throws -> Outcome {
        var pipeline = DeliveryPipeline(unit: unit, fencing: fencing, store: store, forwarder: forwarder)
        let outcome: Outcome
        do {
            outcome = try await withThrowingTaskGroup(of: (Int, BlobOutcome, MemoryClaim).self) { group in
                var launched = 0
                var ready: [Int: (BlobOutcome, MemoryClaim)] = [:]
                for index in blobs.indices {
                    guard shouldContinue() else {
                        group.cancelAll()
                        return .stopped
                    }
                    while launched < blobs.count && launched < index + settings.blobConcurrency {
                        let blob = blobs[launched]
                        let position = launched
                        let claim = memory.claim()
                        group.addTask { (position, try await microsoft.fetchBlob(auth, blob, memory: claim), claim) }
                        launched += 1
                    }
                    while ready[index] == nil, let (position, result, claim) = try await group.next() { ready[position] = (result, claim) }
                    guard let (result, claim) = ready.removeValue(forKey: index) else { break }
                    let blob = blobs[index]
                    let created = RFC3339.parse(blob.contentCreated) ?? windowStart
                    // At most `blobConcurrency` blobs forwarded and not yet remembered: what a crash can repeat.
                    let submitted = try await pipeline.submit(blob: blob, created: created, outcome: result, route: route)
                    // Handed to the forwarder (whose own budget counts it now), or not forwarded at all.
                    claim.release()
                    guard submitted, try await pipeline.commitDelivered(keepingAtMost: settings.blobConcurrency) else {
                        group.cancelAll()
                        return .leaseLost
                    }
                }
                group.cancelAll()
                return .done
            }
        } catch {
            _ = try? await pipeline.commitDelivered(keepingAtMost: 0)
            throw error
        }
        guard try await pipeline.commitDelivered(keepingAtMost: 0) else { return .leaseLost }
        return outcome
    }

    /// The first 8 bytes of SHA-256 of the record id, big-endian: what `forwarded_records` stores, so it must
    /// never change (pinned in a unit test).
    static func hash(_ id: String) -> Int64 {
        var id = id
        let digest = id.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes { $0.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) } }
    }
}

/// The ordered tail of a poll: drops records already forwarded (in PostgreSQL or earlier in this poll), submits
/// the rest to the forwarder, and remembers each blob once its logs are acknowledged.
struct DeliveryPipeline {
    let unit: CollectionUnit
    let fencing: Int64
    let store: PostgresCollectionStore
    let forwarder: UTMStackForwarder
    private var seen = Set<Int64>()
    private var awaiting: [(blob: PostgresCollectionStore.DeliveredBlob, ticket: DeliveryTicket)] = []

    init(unit: CollectionUnit, fencing: Int64, store: PostgresCollectionStore, forwarder: UTMStackForwarder) {
        self.unit = unit
        self.fencing = fencing
        self.store = store
        self.forwarder = forwarder
    }

    /// Returns false, forwarding nothing, when the lease is no longer ours (checked in the same query).
    mutating func submit(blob: ContentBlob, created: Date, outcome: BlobOutcome, route: TenantRoute) async throws -> Bool {
        switch outcome {
        case .skipped:
            awaiting.append((.init(contentID: blob.contentID, contentCreated: created, recordHashes: [], forwarded: 0, skipped: true), .alreadyDelivered))
        case .records(let records):
            let hashes = records.map { Collector.hash($0.id) }
            guard let already = try await store.forwardedRecords(
                tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, hashes: hashes)
            else { return false }
            var logs = OutboundBatch(rawBytes: records.reduce(0) { $0 + $1.raw.utf8.count }, count: records.count)
            logs.origin = LogOrigin(tenant: unit.tenant, contentType: unit.contentType, contentID: blob.contentID)
            var kept: [Int64] = []
            kept.reserveCapacity(records.count)
            for (record, hash) in zip(records, hashes) where !already.contains(hash) && seen.insert(hash).inserted {
                logs.append(EventShaper.log(record, route: route, fallbackTimestamp: blob.contentCreated))
                kept.append(hash)
            }
            Metrics.records.increment(by: logs.count)
            Metrics.duplicates.increment(by: records.count - logs.count)
            let ticket = try await forwarder.submit(logs)
            awaiting.append((.init(contentID: blob.contentID, contentCreated: created, recordHashes: kept, forwarded: logs.count, skipped: false), ticket))
        }
        Metrics.blobs.increment()
        return true
    }

    /// Remembers, in one transaction, every submitted blob whose logs UTMStack acknowledged, first waiting for the
    /// oldest until at most `keepingAtMost` remain unremembered. Returns false when the lease was lost (nothing is
    /// written then).
    mutating func commitDelivered(keepingAtMost limit: Int) async throws -> Bool {
        guard !awaiting.isEmpty else { return true }
        if awaiting.count > limit { try await forwarder.waitDelivered(awaiting[awaiting.count - limit - 1].ticket) }
        var count = 0
        // Tickets are cumulative: find the last delivered one.
        for index in awaiting.indices.reversed() {
            if await forwarder.isDelivered(awaiting[index].ticket) {
                count = index + 1
                break
            }
        }
        guard count > 0 else { return true }
        let blobs = awaiting.prefix(count).map(\.blob)
        guard try await store.commit(
            tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, blobs: blobs, checkpoint: nil)
        else { return false }
        awaiting.removeFirst(count)
        return true
    }
}

/// Collection metrics; labels are bounded (never tenant ids).
enum Metrics {
    static let records = Counter(label: "o365gw_collection_records_forwarded_total")
    static let duplicates = Counter(label: "o365gw_collection_records_duplicate_total")
    static let blobs = Counter(label: "o365gw_collection_blobs_total")
    static let gaps = Counter(label: "o365gw_collection_gaps_total")
}
