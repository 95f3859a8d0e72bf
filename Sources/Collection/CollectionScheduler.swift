import ActivityAPI
import Foundation
import GatewayCore
import Logging
import PostgresStorage
import Scheduling
import ServiceLifecycle
import Synchronization
import UTMStackForwarder

/// Holds leases (docs/collection.md) and runs one collector task per held unit, at most `workers` at once, as
/// children of one task group. A collector's failure is recorded in its unit's status and retried at the next
/// poll; it never ends the group. On graceful shutdown it stops polling, lets collectors finish, releases leases.
public final class CollectionScheduler: Service, Sendable {
    let owner: String
    let tenants: any TenantStore
    let store: PostgresCollectionStore
    let microsoft: ActivityClient
    let validator: TenantValidator
    let forwarder: UTMStackForwarder
    let reporter: any ProblemReporter
    let settings: CollectionSettings
    let logger: Logger
    /// Units this replica holds, with their fencing tokens; collectors stop when theirs leaves.
    private let held = Mutex<[CollectionUnit: Int64]>([:])
    /// Units with a collector task.
    private let running = Mutex<Set<CollectionUnit>>([])

    public init(
        owner: String, tenants: any TenantStore, store: PostgresCollectionStore, microsoft: ActivityClient,
        validator: TenantValidator, forwarder: UTMStackForwarder, reporter: any ProblemReporter,
        settings: CollectionSettings, logger: Logger
    ) {
        self.owner = owner
        self.tenants = tenants
        self.store = store
        self.microsoft = microsoft
        self.validator = validator
        self.forwarder = forwarder
        self.reporter = reporter
        self.settings = settings
        self.logger = logger
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                do {
                    try await tick()
                } catch where !Task.isCancelled {
                    logger.warning("lease tick failed", metadata: ["error": "\(String(reflecting: error))"])
                } catch {
                    break  // cancelled
                }
                for unit in held.withLock({ Array($0.keys) }).sorted() {
                    let started = running.withLock { running in
                        guard running.count < settings.workers, running.insert(unit).inserted else { return false }
                        return true
                    }
                    guard started else { continue }
                    group.addTask {
                        await self.collect(unit)
                        _ = self.running.withLock { $0.remove(unit) }
                    }
                }
                guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: self.settings.tick) })) != nil else { break }
            }
            // Stop: collectors see their units gone, finish the blob at hand, and return; the group waits for them.
            held.withLock { $0.removeAll() }
        }
        try? await releaseAll()
    }

    /// One scheduling round: sync units, heartbeat, plan, apply.
    func tick() async throws {
        try await store.syncUnits()
        let replicas = try await store.heartbeat(owner: owner, ttl: settings.leaseTTL)
        let now = try await store.now()
        let rows = try await store.units()
        let leases = rows.map {
            Lease(unit: CollectionUnit(tenant: $0.tenant, contentType: $0.contentType), owner: $0.owner, expiresAt: $0.expiresAt, fencing: $0.fencing)
        }
        var mine: [CollectionUnit: Int64] = [:]
        for action in LeaseBalancer.plan(leases: leases, me: owner, liveReplicas: replicas, now: now) {
            switch action {
            case .renew(let unit, let fencing):
                if try await store.renew(tenant: unit.tenant, contentType: unit.contentType, owner: owner, fencing: fencing, ttl: settings.leaseTTL) {
                    mine[unit] = fencing
                }
            case .acquire(let unit, let expected):
                if let fencing = try await store.acquire(tenant: unit.tenant, contentType: unit.contentType, owner: owner, expectedFencing: expected, ttl: settings.leaseTTL) {
                    mine[unit] = fencing
                    logger.info("lease acquired", metadata: ["unit": "\(unit)", "fencing": "\(fencing)"])
                }
            case .release(let unit, let fencing):
                // Its collector sees the unit gone and stops; the lease is handed back after it did.
                logger.info("lease released", metadata: ["unit": "\(unit)"])
                try await store.release(tenant: unit.tenant, contentType: unit.contentType, owner: owner, fencing: fencing)
            }
        }
        held.withLock { $0 = mine }
    }

    private func releaseAll() async throws {
        for unit in try await store.units() where unit.owner == owner {
            try await store.release(tenant: unit.tenant, contentType: unit.contentType, owner: owner, fencing: unit.fencing)
        }
        try await store.leaveReplicas(owner: owner)
    }

    /// Polls one unit while this replica holds it.
    private func collect(_ unit: CollectionUnit) async {
        var attempt = 0
        while let fencing = held.withLock({ $0[unit] }), !Task.isCancelled {
            let checkpoint = try? await store.units(of: unit.tenant).first { $0.contentType == unit.contentType }?.checkpoint
            let collector = Collector(
                unit: unit, fencing: fencing, tenants: tenants, store: store, microsoft: microsoft, validator: validator,
                forwarder: forwarder, settings: settings)
            var wait = settings.pollInterval
            do {
                switch try await collector.poll(checkpoint: checkpoint) {
                case .done: attempt = 0
                case .leaseLost, .tenantGone: return
                }
            } catch {
                attempt += 1
                let (code, advice) = Self.describe(error)
                logger.warning("collection failed", metadata: ["unit": "\(unit)", "code": "\(code)"])
                try? await store.recordError(tenant: unit.tenant, contentType: unit.contentType, fencing: fencing, code: code, advice: advice)
                if let error = error as? MicrosoftError, error.isAuthenticationProblem || error.code == "subscription_disabled",
                    let tenant = try? await tenants.get(unit.tenant)
                {
                    await reporter.report(IntegrationProblem(tenant: unit.tenant, tenantName: tenant.name, code: code, advice: advice, contentType: unit.contentType))
                }
                wait = min(settings.pollInterval, .seconds(Int(RetryBackoff.delay(attempt: attempt, base: 2, cap: 60))))
            }
            // Wake early when the unit is no longer ours.
            let deadline = ContinuousClock.now + wait
            while ContinuousClock.now < deadline, held.withLock({ $0[unit] }) == fencing {
                guard (try? await Task.sleep(for: min(.milliseconds(500), deadline - .now))) != nil else { return }
            }
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
