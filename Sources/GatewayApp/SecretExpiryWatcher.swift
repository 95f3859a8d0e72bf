import ActivityAPI
import Foundation
import GatewayCore
import Logging
import Metrics
import PostgresStorage
import ServiceLifecycle
import Synchronization
import UTMStackForwarder

/// Knows each tenant's credential expiry and alerts before collection breaks, in exactly one replica at a time
/// (docs/expiry.md). Every replica tries for the fleet lease each round; the holder
/// 1. asks Graph for the end date of the credential in use, for tenants not asked for a day (or since a rotation),
/// 2. records the alert stages now due (thresholds, then daily once expired), each once per credential,
/// 3. delivers what is owed to UTMStack (`Notify`) and the webhook, retrying with backoff,
/// 4. exports the fleet's earliest expiry as a gauge, and with `O365GW_METRICS_PER_TENANT` the expiry of each tenant
///    (only the holder does, so the fleet has one series each).
/// A failing webhook or Graph only delays this service; collection never waits on it.
struct SecretExpiryWatcher: Service {
    static let leaseName = "secret-expiry"

    let owner: String
    let tenants: any TenantStore
    let store: PostgresSecretExpiryStore
    let validator: TenantValidator
    let notifier: any ProblemNotifier
    let webhook: AlertWebhook?
    let policy: ExpiryAlertPolicy
    let interval: Duration
    /// Graph lookups per round at most (10,000 tenants are all looked up within a few hours of a start).
    var lookupsPerRound = 50
    /// An alert still undelivered after this many attempts (about a day at the capped delay) is given up, logged.
    var maxAttempts = 30
    let logger: Logger
    var gauges = ExpiryGauges(perTenant: false)

    var leaseTTL: TimeInterval { max(30, 3 * interval.seconds) }
    /// A failed delivery is tried again after half a round (at most 30 s), doubling to an hour.
    var retryBase: TimeInterval { min(30, interval.seconds / 2) }

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                // A round over thousands of tenants asks Graph for each: a graceful shutdown ends it where it is
                // (the next round, on any replica, goes on from what was recorded).
                try await cancelWhenGracefulShutdown { try await self.round(now: Date()) }
            } catch is CancellationError {
                break
            } catch where !Task.isCancelled {
                logger.warning("secret expiry round failed", metadata: ["error": "\(error)"])
            }
            // Ends the wait on graceful shutdown or cancellation; either ends the loop.
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil else { break }
        }
        gauges.clear()
        try? await withTimeout(.seconds(5)) { try await store.releaseLease(Self.leaseName, owner: owner) }
    }

    /// One round; returns whether this replica held the lease.
    @discardableResult
    func round(now: Date) async throws -> Bool {
        guard let fencing = try await store.holdLease(Self.leaseName, owner: owner, ttl: leaseTTL) else {
            gauges.clear()
            return false
        }
        var all = try await tenants.list()
        if await refreshFromGraph(all, now: now) > 0 {
            // Graph may have taken a while: still the holder?
            guard try await store.holdLease(Self.leaseName, owner: owner, ttl: leaseTTL) == fencing else { return false }
            all = try await tenants.list()
        }
        let due = all.filter(\.enabled).compactMap { tenant -> PostgresSecretExpiryStore.DueAlert? in
            guard let (expiresAt, source) = tenant.secretExpiry.effective,
                let stage = policy.stage(expiresAt: expiresAt, now: now)
            else { return nil }
            let item = SecretExpiryReport.item(tenant, now: now, withinDays: policy.thresholds.first ?? 30)
            return .init(
                tenant: tenant.id, generation: tenant.credentialGeneration, stage: stage, expiresAt: expiresAt,
                source: source, advice: item.advice)
        }
        let added = try await store.enqueue(due, webhook: webhook != nil, lease: Self.leaseName, fencing: fencing)
        if added > 0 { logger.info("secret expiry alerts due", metadata: ["count": "\(added)"]) }
        try await deliverPending(now: now, fencing: fencing)
        gauges.update(all)
        return true
    }

    /// Asks Graph for the tenants whose lookup is due, a few at a time; returns how many were asked. One tenant that
    /// cannot be looked up (its credential cannot be opened, the database failed for it) is logged and skipped: it
    /// never holds up the others' lookups or the alerts.
    func refreshFromGraph(_ all: [Tenant], now: Date) async -> Int {
        let due = Array(all.filter { $0.secretExpiry.graphLookupDue(now: now) }.prefix(lookupsPerRound))
        await withTaskGroup(of: Void.self) { group in
            for (index, tenant) in due.enumerated() {
                if index >= 4 { await group.next() }
                group.addTask {
                    do {
                        let credential = try await tenants.credential(of: tenant.id)
                        let finding = await validator.expiryLookup.lookup(validator.auth(tenant, credential: credential))
                        try await store.recordGraphFinding(finding, tenant: tenant.id, generation: tenant.credentialGeneration)
                    } catch {
                        logger.notice("graph lookup skipped", metadata: ["tenant": "\(tenant.id)", "error": "\(error)"])
                    }
                }
            }
            await group.waitForAll()
        }
        return due.count
    }

    /// Sends every alert owed to a destination; what fails is tried again after a growing delay. The lease is
    /// renewed before each alert, so a replica that lost it (a slow webhook, a frozen process) stops sending.
    func deliverPending(now: Date, fencing: Int64) async throws {
        for alert in try await store.pending() {
            guard try await store.holdLease(Self.leaseName, owner: owner, ttl: leaseTTL) == fencing else { return }
            var utmstack = alert.utmstackPending, hook = alert.webhookPending
            var errors: [String] = []
            if utmstack {
                do {
                    try await withTimeout(.seconds(10)) { try await notifier.deliver(alert.problem) }
                    utmstack = false
                } catch {
                    errors.append("UTMStack: \(error)")
                }
            }
            if hook, let webhook {
                do {
                    try await webhook.post(alert, now: now)
                    hook = false
                } catch {
                    errors.append("webhook: \(error)")
                }
            }
            let abandon = (utmstack || hook) && alert.attempts + 1 >= maxAttempts
            if abandon {
                logger.error(
                    "secret expiry alert given up after repeated delivery failures",
                    metadata: ["tenant": "\(alert.tenant)", "stage": "\(alert.stage)", "error": "\(errors.joined(separator: "; "))"])
            } else if utmstack || hook {
                logger.notice(
                    "secret expiry alert not delivered yet; retrying",
                    metadata: ["tenant": "\(alert.tenant)", "stage": "\(alert.stage)", "error": "\(errors.joined(separator: "; "))"])
            } else {
                logger.warning(
                    "secret expiry alert sent",
                    metadata: ["tenant": "\(alert.tenant)", "code": "\(alert.code)", "stage": "\(alert.stage)", "advice": "\(alert.advice)"])
            }
            try await store.recordDelivery(
                alert.id, utmstackPending: utmstack, webhookPending: hook, retryIn: RetryBackoff.delay(attempt: alert.attempts, base: retryBase, cap: 3600),
                error: errors.isEmpty ? nil : errors.joined(separator: "; "), abandon: abandon)
        }
    }
}

/// `o365gw_secret_expiry_earliest_timestamp_seconds`: when the first of the fleet's credentials ends, as best known;
/// with `perTenant`, also `o365gw_secret_expiry_timestamp_seconds{tenant}` for each tenant. /metrics needs no token,
/// so tenant ids (and when each one's secret ends) are in it only when the operator asks for them.
final class ExpiryGauges: Sendable {
    static let name = "o365gw_secret_expiry_timestamp_seconds"
    static let earliestName = "o365gw_secret_expiry_earliest_timestamp_seconds"
    let perTenant: Bool
    private let gauges = Mutex<(earliest: Gauge?, tenants: [TenantID: Gauge])>((nil, [:]))

    init(perTenant: Bool) { self.perTenant = perTenant }

    func update(_ tenants: [Tenant]) {
        gauges.withLock { gauges in
            var seen = Set<TenantID>()
            var earliest: Date?
            for tenant in tenants {
                guard let expiresAt = tenant.secretExpiresAt else { continue }
                earliest = min(earliest ?? expiresAt, expiresAt)
                guard perTenant else { continue }
                seen.insert(tenant.id)
                let gauge = gauges.tenants[tenant.id] ?? Gauge(label: Self.name, dimensions: [("tenant", "\(tenant.id)")])
                gauges.tenants[tenant.id] = gauge
                gauge.record(expiresAt.timeIntervalSince1970)
            }
            for (id, gauge) in gauges.tenants where !seen.contains(id) {
                gauge.destroy()
                gauges.tenants[id] = nil
            }
            if let earliest {
                let gauge = gauges.earliest ?? Gauge(label: Self.earliestName)
                gauges.earliest = gauge
                gauge.record(earliest.timeIntervalSince1970)
            } else {
                gauges.earliest?.destroy()
                gauges.earliest = nil
            }
        }
    }

    func clear() {
        gauges.withLock { gauges in
            for gauge in gauges.tenants.values { gauge.destroy() }
            gauges.tenants.removeAll()
            gauges.earliest?.destroy()
            gauges.earliest = nil
        }
    }
}
