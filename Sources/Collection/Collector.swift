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
    /// Where each tenant's records go: its destination's forwarder.
    let destinations: DestinationRouter
    /// Fetched blobs count here until they are handed to the forwarder.
    let memory: ResponseMemoryBudget
    /// Where checkpoints of windows without blobs go (written for all units together).
    let checkpoints: CheckpointBatch
    let settings: CollectionSettings
    let logger: Logger
    /// False once this replica should stop the unit (lease handed over, tenant gone, shutting down); checked
    /// between blobs.
    let shouldContinue: @Sendable () -> Bool

    /// `rerouted`: the tenant was moved to another destination, or its destination changed, during the poll; the
    /// poll stopped before its next blob, and the next one (at once) goes to the destination as it is now.
    enum Outcome: Equatable { case done, leaseLost, tenantGone, stopped, rerouted }

    /// Collects from `checkpoint` (the unit's stored one) up to now, to the tenant's destination. Returns how it
    /// ended and the checkpoint it committed last (the next poll of this lease starts there without reading it
    /// again). A destination that does not take logs admits one poll at a time (docs/destinations.md): the others
    /// fail at once with `utmstack_unavailable`, before asking Microsoft anything.
    func poll(checkpoint: Date?) async throws -> (Outcome, checkpoint: Date?) {
        guard let tenant = try await tenants.tenant(unit.tenant), tenant.enabled, tenant.contentTypes.contains(unit.contentType)
        else { return (.tenantGone, checkpoint) }
        let forwarder = try await destinations.forwarder(for: tenant.destination, generation: tenant.destinationGeneration)
        guard let admission = await forwarder.admitPoll() else { throw await forwarder.unavailableError }
        do {
            let result = try await poll(tenant, checkpoint: checkpoint, forwarder: forwarder)
            await forwarder.pollEnded(admission)
            return result
        } catch {
            await forwarder.pollEnded(admission)
            throw error
        }
    }

    private func poll(_ tenant: Tenant, checkpoint: Date?, forwarder: UTMStackForwarder) async throws -> (Outcome, checkpoint: Date?) {
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
        var pipeline = DeliveryPipeline(unit: unit, fencing: fencing, store: store, forwarder: forwarder, checkpoints: checkpoints)
        let outcome: Outcome
        do {
            outcome = try await collect(
                plan.windows, auth: auth, route: route, destination: Routing(tenant), into: &pipeline)
            guard try await pipeline.commitDelivered(keepingAtMost: 0) else { return (.leaseLost, pipeline.committedCheckpoint ?? checkpoint) }
        } catch {
            // What was submitted is first waited for (while the destination makes progress) and remembered, so a
            // retry never forwards it again; what the destination does not take is withdrawn, to be collected again.
            if (try? await pipeline.commitDelivered(keepingAtMost: 0)) == nil { await pipeline.abandon() }
            throw error
        }
        return (outcome, pipeline.committedCheckpoint ?? checkpoint)
    }

    /// Lists the windows one after the other without waiting for UTMStack at their ends: a window's end is queued
    /// in the pipeline behind its blobs and becomes the checkpoint when they are remembered.
    private func collect(
        _ windows: [ContentWindow], auth: TenantAuth, route: TenantRoute, destination: Routing, into pipeline: inout DeliveryPipeline
    ) async throws -> Outcome {
        for window in windows {
            let listed = try await microsoft.listContent(auth, unit.contentType, window: window)
            let known = try await store.forwardedContent(tenant: unit.tenant, ids: listed.map(\.contentID))
            let pending = listed.filter { !known.contains($0.contentID) }
            let outcome = try await forward(
                pending, auth: auth, route: route, destination: destination, windowStart: window.start, into: &pipeline)
            guard outcome == .done else { return outcome }
            pipeline.checkpoint(window.end)
            guard try await pipeline.commitDelivered(keepingAtMost: settings.blobConcurrency) else { return .leaseLost }
        }
        return .done
    }

    /// Fetches up to `blobConcurrency` blobs ahead, each with its de-duplication lookup, forwards them in listing
    /// order, and commits delivered blobs as their acknowledgements arrive.
    private func forward(
        _ blobs: [ContentBlob], auth: TenantAuth, route: TenantRoute, destination: Routing, windowStart: Date,
        into pipeline: inout DeliveryPipeline
    ) async throws -> Outcome {
        try await withThrowingTaskGroup(of: (Int, FetchedBlob).self) { group in
            var launched = 0
            var ready: [Int: FetchedBlob] = [:]
            for index in blobs.indices {
                guard shouldContinue() else {
                    group.cancelAll()
                    return .stopped
                }
                // The tenant's destination as it is now (a cached read: the cache drops when a tenant or a
                // destination changes): a poll never sends on to a destination the tenant no longer names.
                guard try await Routing(try await tenants.tenant(unit.tenant)) == destination else {
                    group.cancelAll()
                    return .rerouted
                }
                while launched < blobs.count && launched < index + settings.blobConcurrency {
                    let blob = blobs[launched]
                    let position = launched
                    let claim = memory.claim()
                    group.addTask { (position, try await fetch(blob, auth: auth, claim: claim)) }
                    launched += 1
                }
                while ready[index] == nil, let (position, fetched) = try await group.next() { ready[position] = fetched }
                guard let fetched = ready.removeValue(forKey: index) else { break }
                let blob = blobs[index]
                let created = RFC3339.parse(blob.contentCreated) ?? windowStart
                // At most `blobConcurrency` blobs forwarded and not yet remembered: what a crash can repeat.
                let submitted = try await pipeline.submit(blob: blob, created: created, fetched: fetched, route: route)
                // Handed to the forwarder (whose own budget counts it now), or not forwarded at all.
                fetched.claim.release()
                guard submitted, try await pipeline.commitDelivered(keepingAtMost: settings.blobConcurrency) else {
                    group.cancelAll()
                    return .leaseLost
                }
            }
            group.cancelAll()
            return .done
        }
    }

    /// The destination a tenant names, at the generation the tenant read saw (nil: the tenant is gone).
    struct Routing: Equatable {
        var name: String?
        var generation: Int64?

        init(_ tenant: Tenant?) {
            name = tenant?.destination
            generation = tenant?.destinationGeneration
        }
    }

    /// A blob with its records' hashes and which of them were forwarded already, read together with the unit's
    /// fencing token (nil: the lease is no longer ours).
    struct FetchedBlob: Sendable {
        var outcome: BlobOutcome
        var hashes: [Int64] = []
        var forwarded: Set<Int64>? = []
        var claim: MemoryClaim
    }

    private func fetch(_ blob: ContentBlob, auth: TenantAuth, claim: MemoryClaim) async throws -> FetchedBlob {
        var fetched = FetchedBlob(outcome: try await microsoft.fetchBlob(auth, blob, memory: claim), claim: claim)
        if case .records(let records) = fetched.outcome {
            fetched.hashes = records.map { Collector.hash($0.id) }
            fetched.forwarded = try await store.forwardedRecords(
                tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, hashes: fetched.hashes)
        }
        return fetched
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
/// the rest to the forwarder, and remembers each blob, and each window's end as the checkpoint, once UTMStack
/// acknowledged every log up to it.
struct DeliveryPipeline {
    let unit: CollectionUnit
    let fencing: Int64
    let store: PostgresCollectionStore
    let forwarder: UTMStackForwarder
    let checkpoints: CheckpointBatch?
    private var seen = Set<Int64>()
    /// A blob, or a window's end (no blob), in submission order, with the ticket that must be delivered first.
    private var awaiting: [(blob: PostgresCollectionStore.DeliveredBlob?, checkpoint: Date?, ticket: DeliveryTicket)] = []
    /// The tickets of this pipeline's own batches not yet committed (what ``abandon()`` withdraws).
    private var submitted: [DeliveryTicket] = []
    /// The ticket of the last logs submitted. Tickets are cumulative: what forwards nothing itself (a skipped
    /// blob, a blob of repeats, a window's end) is delivered when everything before it is.
    private var lastTicket = DeliveryTicket.alreadyDelivered
    /// The checkpoint this pipeline committed last.
    private(set) var committedCheckpoint: Date?

    /// - Parameter checkpoints: where a checkpoint with no blob to remember goes; nil to write it at once.
    init(unit: CollectionUnit, fencing: Int64, store: PostgresCollectionStore, forwarder: UTMStackForwarder, checkpoints: CheckpointBatch? = nil) {
        self.unit = unit
        self.fencing = fencing
        self.store = store
        self.forwarder = forwarder
        self.checkpoints = checkpoints
    }

    /// Returns false, forwarding nothing, when the lease is no longer ours (the blob's lookup said so).
    mutating func submit(blob: ContentBlob, created: Date, fetched: Collector.FetchedBlob, route: TenantRoute) async throws -> Bool {
        switch fetched.outcome {
        case .skipped:
            let skipped = PostgresCollectionStore.DeliveredBlob(
                contentID: blob.contentID, contentCreated: created, recordHashes: [], forwarded: 0, skipped: true)
            awaiting.append((skipped, nil, lastTicket))
        case .records(let records):
            guard let already = fetched.forwarded else { return false }
            var logs = OutboundBatch(rawBytes: records.reduce(0) { $0 + $1.raw.utf8.count }, count: records.count)
            logs.origin = LogOrigin(tenant: unit.tenant, contentType: unit.contentType, contentID: blob.contentID)
            var kept: [Int64] = []
            kept.reserveCapacity(records.count)
            for (record, hash) in zip(records, fetched.hashes) where !already.contains(hash) && seen.insert(hash).inserted {
                logs.append(EventShaper.log(record, route: route, fallbackTimestamp: blob.contentCreated))
                kept.append(hash)
            }
            Metrics.records.increment(by: logs.count)
            Metrics.duplicates.increment(by: records.count - logs.count)
            if !logs.isEmpty {
                lastTicket = try await forwarder.submitUnlessStalled(logs)
                submitted.append(lastTicket)
            }
            let delivered = PostgresCollectionStore.DeliveredBlob(
                contentID: blob.contentID, contentCreated: created, recordHashes: kept, forwarded: logs.count, skipped: false)
            awaiting.append((delivered, nil, lastTicket))
        }
        Metrics.blobs.increment()
        return true
    }

    /// A window ends here: its end becomes the checkpoint with the commit of the blobs before it.
    mutating func checkpoint(_ end: Date) {
        awaiting.append((nil, end, lastTicket))
    }

    /// Remembers, in one statement, every blob (and window end) whose logs UTMStack acknowledged, first waiting for
    /// the oldest until at most `keepingAtMost` blobs remain unremembered (0: waits for everything). Returns false
    /// when the lease was lost (nothing is written then).
    mutating func commitDelivered(keepingAtMost limit: Int) async throws -> Bool {
        guard let last = awaiting.last else { return true }
        if limit == 0 {
            try await forwarder.waitDeliveredUnlessStalled(last.ticket)
        } else {
            let blobs = awaiting.indices.filter { awaiting[$0].blob != nil }
            if blobs.count > limit { try await forwarder.waitDeliveredUnlessStalled(awaiting[blobs[blobs.count - limit - 1]].ticket) }
        }
        var count = 0
        for index in awaiting.indices.reversed() where await forwarder.isDelivered(awaiting[index].ticket) {
            count = index + 1
            break
        }
        guard count > 0 else { return true }
        let done = awaiting.prefix(count)
        let checkpoint = done.compactMap(\.checkpoint).last
        if let checkpoint, let checkpoints, done.allSatisfy({ $0.blob == nil }) {
            // Nothing to remember: the checkpoint goes with the next batch of all units.
            checkpoints.add(unit, fencing: fencing, checkpoint: checkpoint)
            committedCheckpoint = checkpoint
            awaiting.removeFirst(count)
            return true
        }
        guard try await store.commit(
            tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, blobs: done.compactMap(\.blob), checkpoint: checkpoint)
        else { return false }
        if let checkpoint { committedCheckpoint = checkpoint }
        awaiting.removeFirst(count)
        return true
    }

    /// The poll gave up: remembers what was delivered (without waiting), then takes the rest back from the
    /// forwarder, unsent, so that the next poll collects it again and UTMStack does not get it twice. Nothing after
    /// this may be committed (withdrawn batches count as done in the forwarder).
    mutating func abandon() async {
        _ = try? await commitDelivered(keepingAtMost: .max)
        await forwarder.withdraw(submitted)
        submitted.removeAll()
        awaiting.removeAll()
    }
}

/// Collection metrics; labels are bounded (never tenant ids).
enum Metrics {
    static let records = Counter(label: "o365gw_collection_records_forwarded_total")
    static let duplicates = Counter(label: "o365gw_collection_records_duplicate_total")
    static let blobs = Counter(label: "o365gw_collection_blobs_total")
    static let gaps = Counter(label: "o365gw_collection_gaps_total")
}
