import ActivityAPI
import Foundation
import GatewayCore
import Logging
import Metrics
import PostgresStorage
import Scheduling
import ServiceLifecycle
import Synchronization
import UTMStackForwarder

/// Holds leases (docs/collection.md) and polls the held units, at most `workers` polls at once. Two loops share
/// one task group with the polls: the lease loop (every `tick`: sync units, heartbeat, renew/acquire/release in
/// batches) and the dispatcher (starts due polls while a worker is free). A poll's failure is recorded in its
/// unit's status and retried with backoff; it never ends the group. On graceful shutdown it stops dispatching,
/// lets polls finish the blob at hand and commit, then releases every lease.
public final class CollectionScheduler: Service, Sendable {
    let owner: String
    let tenants: TenantCache
    let store: PostgresCollectionStore
    let microsoft: ActivityClient
    let validator: TenantValidator
    let destinations: DestinationRouter
    let memory: ResponseMemoryBudget
    let reporter: any ProblemReporter
    let settings: CollectionSettings
    let logger: Logger
    private let state: Mutex<SchedulerState>
    /// When the last lease round succeeded.
    private let lastRound = Mutex(ContinuousClock.now)
    /// The registry's stamp when units were last synced with it: no sync while it stays.
    private let syncedStamp = Mutex<TenantChangeStamp?>(nil)
    private let checkpoints: CheckpointBatch

    public init(
        owner: String, tenants: any TenantStore, store: PostgresCollectionStore, microsoft: ActivityClient,
        validator: TenantValidator, destinations: DestinationRouter, memory: ResponseMemoryBudget,
        reporter: any ProblemReporter, settings: CollectionSettings, logger: Logger
    ) {
        self.owner = owner
        self.tenants = TenantCache(store: tenants)
        self.store = store
        self.microsoft = microsoft
        self.validator = validator
        self.destinations = destinations
        self.memory = memory
        self.reporter = reporter
        self.settings = settings
        self.logger = logger
        self.state = Mutex(SchedulerState(margin: .seconds(settings.leaseTTL / 4)))
        self.checkpoints = CheckpointBatch(store: store)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.leaseLoop() }
                group.addTask {
                    while (try? await Task.sleep(for: .seconds(1))) != nil {
                        LeaseMetrics.roundAge.record(self.leaseRoundAge.seconds)
                    }
                }
                group.addTask {
                    while (try? await Task.sleep(for: .seconds(1))) != nil { await self.flushCheckpoints() }
                }
                await dispatch(into: &group)
                // Stopping: polls finish the blob at hand and commit; bounded, then cancelled.
                let deadline = ContinuousClock.now + settings.drainTimeout
                while state.withLock({ $0.runningCount > 0 }), ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                if state.withLock({ $0.runningCount > 0 }) {
                    logger.warning("collectors did not stop in time; their uncommitted blobs are collected again")
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopping = true }
        }
        await flushCheckpoints()
        do {
            try await releaseAll()
        } catch {
            logger.warning("leases not released; they expire after the TTL", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    // MARK: Leases

    /// How long ago a lease round last succeeded. Past the lease TTL this replica's leases may be gone: `/readyz`
    /// fails, and its polls have stopped (they stop a quarter TTL before).
    public var leaseRoundAge: Duration { .now - lastRound.withLock { $0 } }

    /// A lease round may take at most half the TTL: a round stuck on the database is abandoned (its statements are
    /// cancelled) and the next one starts on time.
    var roundDeadline: Duration { .seconds(settings.leaseTTL / 2) }

    private func leaseLoop() async {
        var lastPrune = ContinuousClock.now - .seconds(3600)
        while !Task.isCancelled {
            let stopping = state.withLock { $0.stopping }
            do {
                try await withTimeout(roundDeadline) { try await self.tick() }
                lastRound.withLock { $0 = .now }
            } catch where !Task.isCancelled {
                logger.warning("lease round failed", metadata: ["error": "\(String(reflecting: error))"])
            } catch {
                return
            }
            if stopping && state.withLock({ $0.runningCount == 0 }) { return }
            if !stopping && ContinuousClock.now - lastPrune >= .seconds(3600) {
                lastPrune = .now
                do { try await store.prune() } catch {
                    logger.warning("pruning de-duplication state failed", metadata: ["error": "\(String(reflecting: error))"])
                }
            }
            guard (try? await Task.sleep(for: stopping ? .milliseconds(500) : settings.tick)) != nil else { return }
        }
    }

    /// One scheduling round: notice registry changes (and then sync units), heartbeat, plan, apply in batches,
    /// then update what this replica holds.
    func tick() async throws {
        let stopping = state.withLock { $0.stopping }
        let stamp = try await tenants.refresh()
        if !stopping, syncedStamp.withLock({ $0 != stamp }) {
            try await store.syncUnits()
            syncedStamp.withLock { $0 = stamp }
        }
        let replicas = try await store.heartbeat(owner: owner, ttl: settings.leaseTTL)
        let now = try await store.now()
        let rows = try await store.leaseRows()
        let leases = rows.map {
            Lease(unit: $0.unit, owner: $0.owner, expiresAt: $0.expiresAt, fencing: $0.fencing)
        }
        var keep: [LeaseKey] = []
        var handOver: Set<CollectionUnit> = []
        var release: [LeaseKey] = []
        var acquire: [LeaseKey] = []
        let actions = LeaseBalancer.plan(leases: leases, me: owner, liveReplicas: replicas, now: now, shuttingDown: stopping)
        state.withLock { state in
            for action in actions {
                switch action {
                case .renew(let unit, let fencing):
                    keep.append(LeaseKey(unit, fencing))
                case .release(let unit, let fencing) where state.units[unit]?.running == true:
                    // Its poll stops at the next blob; the lease is handed back on a later tick, after it did.
                    keep.append(LeaseKey(unit, fencing))
                    handOver.insert(unit)
                case .release(let unit, let fencing):
                    // No poll may start on it from now on.
                    state.units[unit]?.wanted = false
                    release.append(LeaseKey(unit, fencing))
                case .acquire(let unit, let expected):
                    if !stopping { acquire.append(LeaseKey(unit, expected)) }
                }
            }
        }
        // The database extends a lease to its now() + TTL; counting from before the request, this replica's view
        // of the expiry is never later than the database's.
        let sentAt = ContinuousClock.now
        let renewed = try await store.renew(keep, owner: owner, ttl: settings.leaseTTL)
        try await store.release(release, owner: owner)
        let acquired = try await store.acquire(acquire, owner: owner, ttl: settings.leaseTTL)
        let gone = state.withLock { state in
            let gone = state.apply(
                renewed: renewed.map(\.unitAndFencing), handOver: handOver, released: Set(release.map(\.unit)),
                acquired: acquired.map(\.key.unitAndFencing), validUntil: sentAt + .seconds(settings.leaseTTL))
            for lease in acquired where state.units[lease.key.unit]?.fencing == lease.key.fencing {
                state.units[lease.key.unit]?.checkpoint = KnownCheckpoint(date: lease.checkpoint)
            }
            return gone
        }
        let existing = Set(leases.map(\.unit))
        let lost = gone.filter { existing.contains($0) }
        LeaseMetrics.changes(acquired: acquired.count, released: release.count, lost: lost.count)
        for lease in acquired { logger.info("lease acquired", metadata: ["unit": "\(lease.key.unit)", "fencing": "\(lease.key.fencing)"]) }
        for key in release { logger.info("lease released", metadata: ["unit": "\(key.unit)"]) }
        for unit in lost { logger.warning("lease lost to another replica", metadata: ["unit": "\(unit)"]) }
        for unit in gone where !existing.contains(unit) {
            logger.info("unit removed: its tenant was deleted, disabled or no longer selects the content type", metadata: ["unit": "\(unit)"])
        }
        let held = state.withLock { $0.units.count }
        LeaseMetrics.held.record(held)
        LeaseMetrics.lag(rows.filter { $0.owner == owner }, now: now, backfill: settings.backfill)
    }

    /// Writes the checkpoints of idle polls (``CheckpointBatch``), within the database deadline of one statement.
    private func flushCheckpoints() async {
        do {
            try await checkpoints.flush()
        } catch {
            logger.warning("checkpoints not written; retried in a second", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    private func releaseAll() async throws {
        let mine = try await store.leaseRows().filter { $0.owner == owner }
        try await store.release(mine.map { LeaseKey($0.unit, $0.fencing) }, owner: owner)
        if !mine.isEmpty { LeaseMetrics.changes(acquired: 0, released: mine.count, lost: 0) }
        try await store.leaveReplicas(owner: owner)
    }

    // MARK: Polls

    /// Starts due polls while workers are free, until stopping. It looks again whenever a poll ends (a freed
    /// worker takes the next due unit at once) and every 100 ms (units that became due).
    private func dispatch(into group: inout DiscardingTaskGroup) async {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        group.addTask {
            while (try? await Task.sleep(for: .milliseconds(100))) != nil { wake.yield() }
            wake.finish()
        }
        var iterator = wakeups.makeAsyncIterator()
        while !Task.isCancelled {
            let due = state.withLock { $0.stopping ? nil : $0.takeDue(now: .now, workers: settings.workers) }
            guard let due else { break }
            for (unit, fencing) in due {
                group.addTask {
                    let next = await self.poll(unit, fencing: fencing)
                    self.state.withLock { $0.finished(unit, next: next) }
                    wake.yield()
                }
            }
            guard await iterator.next() != nil else { break }
        }
        wake.finish()
    }

    /// One poll of a unit; returns how long to wait before the next one (nil: do not poll it again).
    private func poll(_ unit: CollectionUnit, fencing: Int64) async -> Duration? {
        let (attempt, known) = state.withLock { ($0.units[unit]?.attempt ?? 0, $0.units[unit]?.checkpoint) }
        let collector = Collector(
            unit: unit, fencing: fencing, tenants: tenants, store: store, microsoft: microsoft, validator: validator,
            destinations: destinations, memory: memory, checkpoints: checkpoints, settings: settings,
            logger: logger, shouldContinue: { self.state.withLock { $0.shouldContinue(unit, fencing: fencing) } })
        do {
            let checkpoint = if let known { known.date } else {
                try await store.checkpoint(tenant: unit.tenant, contentType: unit.contentType)
            }
            let (outcome, committed) = try await collector.poll(checkpoint: checkpoint)
            PollMetrics.succeeded.increment()
            switch outcome {
            case .done, .stopped, .rerouted:
                state.withLock { state in
                    state.units[unit]?.attempt = 0
                    if state.units[unit]?.fencing == fencing { state.units[unit]?.checkpoint = KnownCheckpoint(date: committed) }
                }
                // A rerouted unit goes on at once, to the destination its tenant names now.
                return outcome == .rerouted ? .zero : settings.pollInterval
            case .leaseLost, .tenantGone:
                return nil
            }
        } catch {
            if Task.isCancelled { return nil }
            PollMetrics.failed.increment()
            state.withLock { state in
                state.units[unit]?.attempt = attempt + 1
                // Whatever the poll committed before it failed is read again.
                state.units[unit]?.checkpoint = nil
            }
            let (code, advice) = Self.describe(error)
            logger.warning("collection failed", metadata: ["unit": "\(unit)", "code": "\(code)"])
            try? await store.recordError(tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, code: code, advice: advice)
            if let error = error as? MicrosoftError, error.isAuthenticationProblem || error.code == "subscription_disabled",
                let tenant = (try? await tenants.tenant(unit.tenant)) ?? nil
            {
                await reporter.report(IntegrationProblem(tenant: unit.tenant, tenantName: tenant.name, code: code, advice: advice, contentType: unit.contentType))
            }
            return min(settings.pollInterval, .seconds(Int(RetryBackoff.delay(attempt: attempt + 1, base: 2, cap: 60))))
        }
    }

    static func describe(_ error: any Error) -> (String, String) {
        switch error {
        case let error as MicrosoftError: (error.code, error.advice)
        case let error as GatewayError: (error.code, error.message)
        case is ForwarderStopped: ("utmstack_unavailable", "UTMStack did not acknowledge in time; collection resumes from the checkpoint.")
        default: ("internal_error", "Collection failed unexpectedly; see the gateway log. It is retried.")
        }
    }
}

typealias LeaseKey = PostgresCollectionStore.LeaseKey

extension PostgresCollectionStore.LeaseRow {
    var unit: CollectionUnit { CollectionUnit(tenant: tenant, contentType: contentType) }
}

extension LeaseKey {
    init(_ unit: CollectionUnit, _ fencing: Int64) {
        self.init(tenant: unit.tenant, contentType: unit.contentType, fencing: fencing)
    }

    var unit: CollectionUnit { CollectionUnit(tenant: tenant, contentType: contentType) }
    var unitAndFencing: (CollectionUnit, Int64) { (unit, fencing) }
}

/// What the scheduler knows of the units it holds (guarded by a mutex; no I/O).
struct SchedulerState {
    struct Held {
        var fencing: Int64
        /// Until when the lease is surely ours (this replica's clock, counted from before the renewal was sent).
        var validUntil: ContinuousClock.Instant
        /// False while the unit is being handed over: no new polls.
        var wanted = true
        var running = false
        var due = ContinuousClock.now
        var attempt = 0
        /// The checkpoint this lease's last poll committed; nil until the first poll read it (and after a failure).
        var checkpoint: KnownCheckpoint?

        /// Polls stop a quarter of the TTL before the lease could expire, before any other replica may take it.
        func isValid(at now: ContinuousClock.Instant, margin: Duration) -> Bool { now < validUntil - margin }
    }

    var units: [CollectionUnit: Held] = [:]
    /// The units by due time: what `takeDue` takes from, in O(log n) per poll however many units there are.
    private var queue = DueQueue()
    var stopping = false
    var margin: Duration

    init(margin: Duration = .seconds(5)) { self.margin = margin }

    /// How many units have a poll running (kept in step with `Held.running`).
    private(set) var runningCount = 0

    func shouldContinue(_ unit: CollectionUnit, fencing: Int64) -> Bool {
        guard !stopping, let held = units[unit] else { return false }
        return held.wanted && held.fencing == fencing && held.isValid(at: .now, margin: margin)
    }

    /// Applies a lease round; returns the units this replica held and no longer does, other than those it released
    /// (taken by another replica, or removed).
    mutating func apply(
        renewed: [(CollectionUnit, Int64)], handOver: Set<CollectionUnit>, released: Set<CollectionUnit>,
        acquired: [(CollectionUnit, Int64)], validUntil: ContinuousClock.Instant
    ) -> [CollectionUnit] {
        var next: [CollectionUnit: Held] = [:]
        next.reserveCapacity(renewed.count + acquired.count)
        for (unit, fencing) in renewed {
            var held = units[unit] ?? Held(fencing: fencing, validUntil: validUntil)
            held.fencing = fencing
            held.validUntil = validUntil
            held.wanted = !handOver.contains(unit)
            next[unit] = held
        }
        for (unit, fencing) in acquired {
            var held = Held(fencing: fencing, validUntil: validUntil)
            // Lost and taken back: the old poll (old token) still runs until it notices; no second poll meanwhile.
            held.running = units[unit]?.running ?? false
            next[unit] = held
        }
        let gone = units.keys.filter { next[$0] == nil }
        for unit in gone where units[unit]!.running {
            // Its poll keeps the entry until it returns; its commits are refused (fencing).
            next[unit] = units[unit]
            next[unit]!.wanted = false
            next[unit]!.fencing = -1
        }
        let lost = gone.filter { !released.contains($0) && units[$0]!.fencing >= 0 }
        units = next
        // Rebuilt each round: entries dropped while a unit was not pollable (handed over, lease near its end)
        // come back when it is again.
        queue.removeAll()
        for (unit, held) in units where !held.running && held.wanted { queue.push(unit, due: held.due) }
        return lost
    }

    /// Marks as running, and returns, the due units that free workers can take, most overdue first. Entries of
    /// the queue are hints: one that no longer matches its unit (polled since, handed over, lease ending) is dropped.
    mutating func takeDue(now: ContinuousClock.Instant, workers: Int) -> [(CollectionUnit, Int64)] {
        var picked: [(CollectionUnit, Int64)] = []
        while runningCount + picked.count < workers, let (due, unit) = queue.first, due <= now {
            queue.removeFirst()
            guard var held = units[unit], !held.running, held.wanted, held.due == due, held.isValid(at: now, margin: margin)
            else { continue }
            held.running = true
            units[unit] = held
            picked.append((unit, held.fencing))
        }
        runningCount += picked.count
        return picked
    }

    /// A poll returned; `next` is when to poll again (nil: not until a lease round says the unit is still ours).
    mutating func finished(_ unit: CollectionUnit, next: Duration?) {
        guard var held = units[unit], held.running else { return }
        runningCount -= 1
        guard held.fencing >= 0 else {
            units.removeValue(forKey: unit)
            return
        }
        held.running = false
        held.due = .now + (next ?? .zero)
        if next == nil { held.wanted = false }
        units[unit] = held
        if held.wanted { queue.push(unit, due: held.due) }
    }
}

/// Units by due time, earliest first: a binary min-heap.
struct DueQueue {
    private var entries: [(due: ContinuousClock.Instant, unit: CollectionUnit)] = []

    var first: (due: ContinuousClock.Instant, unit: CollectionUnit)? { entries.first }

    mutating func push(_ unit: CollectionUnit, due: ContinuousClock.Instant) {
        entries.append((due, unit))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].due < entries[parent].due else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() {
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            var smallest = parent
            for child in [2 * parent + 1, 2 * parent + 2] where child < entries.count && entries[child].due < entries[smallest].due {
                smallest = child
            }
            guard smallest != parent else { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }

    mutating func removeAll() { entries.removeAll(keepingCapacity: true) }
}

/// A unit's checkpoint as this replica knows it (nil inside: the unit has none yet, its first poll backfills).
struct KnownCheckpoint: Sendable, Equatable {
    var date: Date?
}

/// Polls by how they ended: the rate of the first is the fleet's polling rate.
enum PollMetrics {
    static let succeeded = Counter(label: "o365gw_collection_polls_total", dimensions: [("outcome", "succeeded")])
    static let failed = Counter(label: "o365gw_collection_polls_total", dimensions: [("outcome", "failed")])
}

/// Scheduling metrics; labels are bounded (action, content type).
enum LeaseMetrics {
    static let held = Gauge(label: "o365gw_leases_held")
    static let roundAge = Gauge(label: "o365gw_lease_round_age_seconds")

    static func changes(acquired: Int, released: Int, lost: Int) {
        if acquired > 0 { Counter(label: "o365gw_lease_changes_total", dimensions: [("action", "acquired")]).increment(by: acquired) }
        if released > 0 { Counter(label: "o365gw_lease_changes_total", dimensions: [("action", "released")]).increment(by: released) }
        if lost > 0 { Counter(label: "o365gw_lease_changes_total", dimensions: [("action", "lost")]).increment(by: lost) }
    }

    /// The largest lag (now − checkpoint) of this replica's units, per content type; a unit still in its first
    /// window counts as `backfill` behind.
    static func lag(_ rows: [PostgresCollectionStore.LeaseRow], now: Date, backfill: TimeInterval) {
        for type in ContentType.allCases {
            let lags = rows.filter { $0.contentType == type }.map { $0.checkpoint.map { now.timeIntervalSince($0) } ?? backfill }
            Gauge(label: "o365gw_collection_lag_seconds", dimensions: [("content_type", type.rawValue)]).record(max(0, lags.max() ?? 0))
        }
    }
}
