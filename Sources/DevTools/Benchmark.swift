import Collection
import CredentialCrypto
import ActivityAPI
import Foundation
import GatewayApp
import GatewayCore
import Logging
import Metrics
import MicrosoftSimulator
import PostgresStorage
import Prometheus
import ServiceLifecycle
import UTMStackForwarder

extension PrometheusCollectorRegistry {
    /// The sum of the samples of metric `name` whose labels include `label` (`kind="fetchBlob"`), read from the
    /// exposition text.
    func total(_ name: String, _ label: String? = nil) -> Double {
        emitToString().split(separator: "\n").reduce(0) { sum, line in
            guard line.hasPrefix(name + " ") || line.hasPrefix(name + "{") else { return sum }
            if let label, !line.contains(label) { return sum }
            return sum + (line.split(separator: " ").last.flatMap { Double($0) } ?? 0)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// `o365-gateway bench` (docs/benchmarks.md): the gateway in this process against a private PostgreSQL, the
/// simulator and the receiver in child processes, so that this process's CPU time and peak memory are the
/// gateway's own.
public enum Benchmark {
    public struct Throughput: Sendable {
        public var tenants: Int
        public var recordsPerBlob: Int
        public var historyHours: Double
        public var workers: Int
        /// The gateway's budgets: fetched blobs, and logs held by the forwarder (the defaults of `serve`).
        public var blobBufferBytes = CollectionSettings().blobBufferBytes
        public var inFlightBytes = ForwarderConfiguration().inFlightByteBudget

        public init(tenants: Int = 8, recordsPerBlob: Int = 1000, historyHours: Double = 1, workers: Int = 32) {
            self.tenants = tenants
            self.recordsPerBlob = recordsPerBlob
            self.historyHours = historyHours
            self.workers = workers
        }
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var lines: [(String, String)] = []
        public var description: String {
            let width = lines.map(\.0.count).max() ?? 0
            return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
        }
    }

    /// Backfills `tenants` × 5 content types of `historyHours` of blobs of `recordsPerBlob` records each, end to end
    /// (list, fetch, de-duplicate, forward, acknowledge, commit), and reports records/s, records per CPU-second and
    /// peak memory.
    public static func throughput(_ settings: Throughput, executable: String, logger: Logger) async throws -> Report {
        try await withEnvironment(executable: executable, logger: logger) { env in
            var simulated = SimulatorConfiguration.generated(tenants: settings.tenants, seed: 7)
            simulated.recordsPerBlob = settings.recordsPerBlob
            simulated.historyHours = settings.historyHours
            let simulatorURL = try await env.startSimulator([
                "--tenants", "\(settings.tenants)", "--seed", "7", "--records-per-blob", "\(settings.recordsPerBlob)",
                "--history-hours", "\(settings.historyHours)", "--frozen",
            ])
            try await Gateway.onboard(simulated.tenants, database: env.database, keyRing: env.keyRing, logger: logger)
            let collection = CollectionSettings(
                pollInterval: .seconds(3600), backfill: (settings.historyHours + 1) * 3600, workers: settings.workers,
                blobBufferBytes: settings.blobBufferBytes)
            let start = Date()
            let cpu0 = CPU.seconds()
            let clock = ContinuousClock.now
            let (units, records) = try await env.runGateway(
                microsoft: simulatorURL, collection: collection, inFlightBytes: settings.inFlightBytes
            ) { store in
                // Done when every unit has listed up to the bench's start (its first poll's window end).
                while true {
                    let progress = try await store.progress(since: start - 61)
                    if progress.units > 0 && progress.caughtUp == progress.units { return (progress.units, progress.records) }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            let elapsed = (ContinuousClock.now - clock).seconds
            let cpu = CPU.seconds() - cpu0
            let peak = Memory.peakMiB()
            // The same receiver fed by the forwarder alone (no Microsoft, no PostgreSQL): what it takes at most.
            let alone = try await forwardAlone(count: Int(min(records, 500_000)), socket: env.socket, logger: logger)
            let rate = Double(records) / elapsed
            var report = Report()
            report.lines = [
                ("scenario", "throughput: \(settings.tenants) tenants × 5 content types, \(settings.historyHours) h backfill, \(settings.recordsPerBlob) records per blob"),
                ("budgets", "fetched blobs \(settings.blobBufferBytes >> 20) MiB, forwarder \(settings.inFlightBytes >> 20) MiB"),
                ("units", "\(units)"),
                ("records forwarded", "\(records) (distinct, acknowledged by the receiver, committed)"),
                ("wall time", String(format: "%.1f s", elapsed)),
                ("records/s (wall)", String(format: "%.0f", rate)),
                ("gateway CPU", String(format: "%.1f s (user+system of this process)", cpu)),
                ("records per CPU-second", String(format: "%.0f", Double(records) / cpu)),
                ("peak RSS", "\(peak) MiB"),
                ("receiver alone", String(format: "%.0f logs/s (%d logs of ~1 KB, the forwarder only, same receiver)", alone.rate, alone.count)),
                ("backfill / receiver alone", String(format: "%.2f", rate / alone.rate)),
            ]
            return report
        }
    }

    /// The UTMStack stream alone: `count` logs of about 1 KB (the size of an audit record) through the forwarder to
    /// the receiver, acknowledged; no Microsoft, no PostgreSQL. Isolates the per-record cost of the protocol.
    public static func forwarder(count: Int, executable: String, logger: Logger) async throws -> Report {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("o365gw-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("engine.sock").path
        let children = ChildProcesses()
        defer { children.stopAll() }
        try children.spawn(executable, ["receiver", "--socket", socket])
        let alone = try await forwardAlone(count: count, socket: socket, logger: logger)
        var report = Report()
        report.lines = [
            ("scenario", "forwarder only: \(count) logs of ~1 KB over gRPC on a Unix socket, each acknowledged"),
            ("wall time", String(format: "%.1f s", alone.elapsed)),
            ("logs/s (wall)", String(format: "%.0f", alone.rate)),
            ("CPU (shaping + forwarding)", String(format: "%.1f s", alone.cpu)),
            ("logs per CPU-second", String(format: "%.0f", Double(count) / alone.cpu)),
        ]
        return report
    }

    /// Forwards `count` synthetic logs of ~1 KB to the receiver on `socket` and waits for the last acknowledgement.
    static func forwardAlone(count: Int, socket: String, logger: Logger) async throws -> (count: Int, elapsed: Double, cpu: Double, rate: Double) {
        let forwarder = UTMStackForwarder(
            configuration: .init(endpoint: .engineSocket(path: socket)), deadLetters: MemoryDeadLetterStore(), logger: logger)
        let route = TenantRoute(tenantID: TenantID(), utmTenantID: defaultUTMStackTenantID, dataSource: "bench")
        let payload = String(repeating: "x", count: 900)
        let batch = 1000
        let group = ServiceGroup(services: [forwarder], logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let cpu0 = CPU.seconds()
            let clock = ContinuousClock.now
            var last: DeliveryTicket?
            for start in stride(from: 0, to: count, by: batch) {
                let logs = (start..<min(count, start + batch)).map { i in
                    let id = "rec-\(i)"
                    return EventShaper.log(
                        AuditRecord(
                            id: id, creationTime: "2026-11-25T10:00:00",
                            raw: #"{"CreationTime":"2026-11-25T10:00:00","Id":""# + id + #"","Operation":"UserLoggedIn","Payload":""# + payload + #""}"#),
                        route: route, fallbackTimestamp: "2026-11-25T10:00:00")
                }
                last = try await forwarder.submit(logs)
            }
            if let last { try await forwarder.waitDelivered(last) }
            let elapsed = (ContinuousClock.now - clock).seconds
            let cpu = CPU.seconds() - cpu0
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return (count, elapsed, cpu, Double(count) / elapsed)
        }
    }

    /// The fleet: what one more tenant costs a replica when there is nothing to collect.
    public struct Fleet: Sendable {
        public var tenants: Int
        /// How long to measure, after every unit was polled once.
        public var seconds: Int
        public var pollInterval: Int
        public var workers: Int

        public init(tenants: Int = 10_000, seconds: Int = 120, pollInterval: Int = 60, workers: Int = CollectionSettings().workers) {
            self.tenants = tenants
            self.seconds = seconds
            self.pollInterval = pollInterval
            self.workers = workers
        }
    }

    /// Onboards `tenants` tenants with no content (all five content types each) and runs the gateway at the given
    /// poll interval. Once every unit has been polled, measures for `seconds`: the gateway's CPU per poll, the
    /// database statements per poll (lease rounds included), the polls per second against the units' due rate, and
    /// how long ago each unit was last polled successfully (sampled every 10 s; the worst sample's percentiles).
    public static func fleet(_ settings: Fleet, executable: String, logger: Logger) async throws -> Report {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return try await withEnvironment(executable: executable, logger: logger) { env in
            let simulated = SimulatorConfiguration.generated(tenants: settings.tenants, seed: 9)
            let simulatorURL = try await env.startSimulator(["--tenants", "\(settings.tenants)", "--seed", "9", "--history-hours", "0", "--frozen"])
            let onboardStart = ContinuousClock.now
            try await Gateway.onboard(simulated.tenants, database: env.database, keyRing: env.keyRing, logger: logger)
            let onboarding = ContinuousClock.now - onboardStart
            let collection = CollectionSettings(pollInterval: .seconds(settings.pollInterval), backfill: 3600, workers: settings.workers)
            let units = settings.tenants * ContentType.allCases.count
            return try await env.runGateway(microsoft: simulatorURL, collection: collection) { store in
                // Warm-up: the first poll of each tenant gets a token and starts its subscriptions.
                let statementsBefore = registry.total("o365gw_database_statements_total")
                let warmUp = try await waitUntilEachPolled(store, units: units, limit: .seconds(10 * settings.pollInterval + 120))
                let warmUpPeak = Memory.peakMiB()
                let polls0 = registry.total("o365gw_collection_polls_total", #"outcome="succeeded""#)
                let failed0 = registry.total("o365gw_collection_polls_total", #"outcome="failed""#)
                let statements0 = registry.total("o365gw_database_statements_total")
                let cpu0 = CPU.seconds()
                let clock = ContinuousClock.now
                var rss: [Int] = []
                let worst = try await worstSuccessAges(store, seconds: settings.seconds) { rss.append(Memory.residentMiB()) }
                let elapsed = (ContinuousClock.now - clock).seconds
                let cpu = CPU.seconds() - cpu0
                let polls = registry.total("o365gw_collection_polls_total", #"outcome="succeeded""#) - polls0
                let failed = registry.total("o365gw_collection_polls_total", #"outcome="failed""#) - failed0
                let statements = registry.total("o365gw_database_statements_total") - statements0
                var report = Report()
                report.lines = [
                    ("scenario", "fleet: \(settings.tenants) tenants × 5 content types, no content, polled every \(settings.pollInterval) s, \(settings.workers) workers"),
                    ("onboarding", "\(onboarding) for \(settings.tenants) tenants (sealed credentials, one INSERT each)"),
                    ("warm-up", String(
                        format: "%.0f s until every unit was polled once; %.0f statements; peak RSS %d MiB",
                        warmUp.seconds, statements0 - statementsBefore, warmUpPeak)),
                    ("measured", String(format: "%.0f s", elapsed)),
                    ("polls/s", String(format: "%.1f (due: %.1f; %.0f failed)", polls / elapsed, Double(units) / Double(settings.pollInterval), failed)),
                    ("gateway CPU", String(format: "%.3f of a core; %.3f ms per poll", cpu / elapsed, polls > 0 ? cpu / polls * 1000 : 0)),
                    ("database statements per poll", String(format: "%.2f (lease rounds included)", polls > 0 ? statements / polls : 0)),
                    ("time since last success", String(
                        format: "p50 %.1f s, p99 %.1f s, max %.1f s (worst of %d samples; target p99 ≤ %d s)",
                        percentile(worst.ages, 0.5), percentile(worst.ages, 0.99), worst.ages.last ?? 0, worst.samples, settings.pollInterval + 10)),
                    ("RSS while polling", "\(rss.min() ?? 0)–\(rss.max() ?? 0) MiB"),
                    ("peak RSS", "\(Memory.peakMiB()) MiB"),
                    ("heap at the end", HeapTuning.usage().description),
                ]
                HeapTuning.trim()
                report.lines.append(("RSS after malloc_trim", "\(Memory.residentMiB()) MiB"))
                return report
            }
        }
    }

    /// One large tenant in a quiet fleet, against Microsoft's quota.
    public struct Quota: Sendable {
        /// Tenants in all; the first one has `backlogHours` of one content type to backfill.
        public var tenants: Int
        public var backlogHours: Double
        /// What the simulator allows per tenant per minute (Microsoft's baseline).
        public var quota: Int
        /// How long to measure, after every other unit was polled once.
        public var seconds: Int

        public init(tenants: Int = 100, backlogHours: Double = 168, quota: Int = 2_000, seconds: Int = 120) {
            self.tenants = tenants
            self.backlogHours = backlogHours
            self.quota = quota
            self.seconds = seconds
        }
    }

    /// The first tenant backfills `backlogHours` of Audit.SharePoint (one blob a minute) while the simulator
    /// enforces `quota` requests per tenant per minute and the other tenants (and the large tenant's other content
    /// types) have nothing to collect. Measures the large tenant's requests per minute against the quota and the
    /// gateway's own budget, the throttled answers, and how long ago every other unit was last polled successfully.
    public static func quota(_ settings: Quota, executable: String, logger: Logger) async throws -> Report {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return try await withEnvironment(executable: executable, logger: logger) { env in
            let simulated = SimulatorConfiguration.generated(tenants: settings.tenants, seed: 11)
            let simulatorURL = try await env.startSimulator([
                "--tenants", "\(settings.tenants)", "--seed", "11", "--history-hours", "0", "--frozen",
                "--backlog", "\(ContentType.sharePoint.rawValue)=\(settings.backlogHours)",
                "--throttle-per-minute", "\(settings.quota)",
            ])
            let ids = try await Gateway.onboard(simulated.tenants, database: env.database, keyRing: env.keyRing, logger: logger)
            let large = (ids[0], ContentType.sharePoint)
            let collection = CollectionSettings(backfill: settings.backlogHours * 3600)
            let budget = ActivityClientConfiguration().requestsPerMinute
            let units = settings.tenants * ContentType.allCases.count
            return try await env.runGateway(microsoft: simulatorURL, collection: collection, requestsPerMinute: budget) { store in
                let warmUp = try await waitUntilEachPolled(store, units: units, limit: .seconds(600))
                let fetches0 = registry.total("o365gw_microsoft_requests_total", #"kind="fetchBlob""#)
                let throttled0 = registry.total("o365gw_microsoft_throttled_total")
                let checkpoint0 = try await store.checkpoint(tenant: large.0, contentType: large.1)
                let clock = ContinuousClock.now
                let worst = try await worstSuccessAges(store, seconds: settings.seconds, excluding: large)
                let minutes = (ContinuousClock.now - clock).seconds / 60
                let fetches = registry.total("o365gw_microsoft_requests_total", #"kind="fetchBlob""#) - fetches0
                let throttled = registry.total("o365gw_microsoft_throttled_total") - throttled0
                let checkpoint1 = try await store.checkpoint(tenant: large.0, contentType: large.1)
                let advanced = (checkpoint1 ?? .distantPast).timeIntervalSince(checkpoint0 ?? checkpoint1 ?? .distantPast) / 3600
                var report = Report()
                report.lines = [
                    ("scenario", "quota: 1 tenant backfilling \(settings.backlogHours) h of \(large.1.rawValue) beside \(settings.tenants - 1) quiet tenants (and its own 4 quiet content types); Microsoft allows \(settings.quota) requests per tenant per minute"),
                    ("warm-up", String(format: "%.0f s until every unit was polled once", warmUp.seconds)),
                    ("measured", String(format: "%.0f s", minutes * 60)),
                    ("large tenant: blob fetches per minute", String(format: "%.0f (quota %d, the gateway's budget %d; its listings come on top)", fetches / minutes, settings.quota, budget)),
                    ("throttled answers", String(format: "%.0f", throttled)),
                    ("large tenant: backfill progress", String(format: "%.1f h of content per minute of collection", advanced / minutes)),
                    ("every other unit: time since last success", String(
                        format: "p50 %.1f s, p99 %.1f s, max %.1f s (worst of %d samples; target p99 ≤ %d s)",
                        percentile(worst.ages, 0.5), percentile(worst.ages, 0.99), worst.ages.last ?? 0, worst.samples, Int(collection.pollInterval.seconds) + 10)),
                    ("peak RSS", "\(Memory.peakMiB()) MiB"),
                ]
                return report
            }
        }
    }

    /// Waits until each of `units` units has a checkpoint (was polled once), at most `limit`; returns how long.
    static func waitUntilEachPolled(_ store: PostgresCollectionStore, units: Int, limit: Duration) async throws -> Duration {
        let start = ContinuousClock.now
        while try await store.progress(since: .distantPast).caughtUp < units, ContinuousClock.now - start < limit {
            try await Task.sleep(for: .seconds(1))
        }
        return ContinuousClock.now - start
    }

    /// Samples the time since each unit's last success every 10 s for `seconds` (calling `each` at every sample);
    /// returns the sample whose p99 was worst, sorted, and how many were taken.
    static func worstSuccessAges(
        _ store: PostgresCollectionStore, seconds: Int, excluding: (TenantID, ContentType)? = nil, each: () -> Void = {}
    ) async throws -> (ages: [Double], samples: Int) {
        let clock = ContinuousClock.now
        var worst: [Double] = []
        var samples = 0
        while ContinuousClock.now - clock < .seconds(seconds) {
            try await Task.sleep(for: .seconds(min(10, seconds)))
            each()
            samples += 1
            let ages = try await store.successAges(excluding: excluding)
            if percentile(ages, 0.99) >= percentile(worst, 0.99) { worst = ages }
        }
        return (worst, samples)
    }

    /// The value at fraction `p` of sorted `values` (0 when empty).
    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        return values[min(values.count - 1, Int((Double(values.count - 1) * p).rounded()))]
    }

    // MARK: Environment

    struct Environment: Sendable {
        let executable: String
        let database: DatabaseURL
        let keyRing: KeyRing
        let socket: String
        let logger: Logger
        let children: ChildProcesses

        func startSimulator(_ arguments: [String]) async throws -> URL {
            let port = LocalPostgres.freePort()
            try children.spawn(executable, ["simulator", "--listen", "127.0.0.1:\(port)"] + arguments)
            try await waitForPort(port)
            return URL(string: "http://127.0.0.1:\(port)")!
        }

        /// Runs the gateway's services (as `serve` does) while `body` watches the database; then stops them.
        func runGateway<R: Sendable>(
            microsoft: URL, collection: CollectionSettings, inFlightBytes: Int = ForwarderConfiguration().inFlightByteBudget,
            requestsPerMinute: Int = 60_000, _ body: @escaping @Sendable (PostgresCollectionStore) async throws -> R
        ) async throws -> R {
            var configuration = try GatewayConfiguration(
                database: database, keyRing: keyRing, adminToken: Secret(UUID().uuidString),
                listen: ListenAddress(host: "127.0.0.1", port: 0),
                forwarder: .init(endpoint: .engineSocket(path: socket), inFlightByteBudget: inFlightBytes),
                microsoft: .init(overrides: .init(login: microsoft, manage: microsoft, graph: microsoft), requestsPerMinute: requestsPerMinute))
            configuration.collection = collection
            let services = try Gateway.services(configuration, metrics: PrometheusCollectorRegistry(), logger: logger)
            let group = ServiceGroup(services: services, logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let result = try await Gateway.withDatabase(database, logger: logger) { database in
                    try await body(PostgresCollectionStore(database: database, logger: logger))
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            }
        }
    }

    static func withEnvironment<R: Sendable>(
        executable: String, logger: Logger, _ body: (Environment) async throws -> R
    ) async throws -> R {
        let postgres = try LocalPostgres(logger: logger)
        defer { postgres.stop() }
        let children = ChildProcesses()
        defer { children.stopAll() }
        let database = try postgres.databaseURL
        _ = try await Gateway.migrate(database, logger: logger)
        let socket = postgres.directory.appendingPathComponent("engine.sock").path
        try children.spawn(executable, ["receiver", "--socket", socket])
        let env = Environment(
            executable: executable, database: database, keyRing: .random(), socket: socket,
            logger: logger, children: children)
        return try await body(env)
    }

    static func waitForPort(_ port: Int) async throws {
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if connected == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw GatewayError(.unavailable, code: "bench_failed", "the simulator did not start listening on port \(port)")
    }
}

/// Child processes of the benchmark (simulator, receiver), stopped with SIGTERM at the end. `Process` is not
/// Sendable; the list is only touched under the lock.
final class ChildProcesses: @unchecked Sendable {
    private let lock = NSLock()
    private var processes: [Process] = []

    func spawn(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        lock.withLock { processes.append(process) }
    }

    func stopAll() {
        for process in lock.withLock({ processes }) where process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

enum CPU {
    /// User plus system CPU time of this process so far.
    static func seconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return user + system
    }
}

enum Memory {
    /// Peak resident set size of this process (VmHWM).
    static func peakMiB() -> Int { status("VmHWM:") }
    /// Resident set size now (VmRSS).
    static func residentMiB() -> Int { status("VmRSS:") }

    private static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }
}
