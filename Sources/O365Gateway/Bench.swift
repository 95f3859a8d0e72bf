import ArgumentParser
import DevTools
import Foundation
import GatewayApp
import Logging

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the gateway on this machine: end-to-end records/s, the cost of each tenant in a large fleet, and peak memory.",
        discussion: """
            Starts a private PostgreSQL, the simulator and the receiver (as child processes, so this process's CPU time
            and memory are the gateway's own), then runs the gateway in this process. Build with -c release first;
            docs/benchmarks.md has the figures of this machine and the command that produced them.
            """)

    @Option(name: .customLong("scenario"), help: "throughput, backfill (one tenant), forwarder, fleet, quota, or all (each in its own process).")
    var scenario: String = "all"

    @Option(name: .customLong("tenants"), help: "Throughput: tenants (5 content types each).")
    var tenants: Int = 8

    @Option(name: .customLong("records-per-blob"), help: "Throughput: records in each blob.")
    var recordsPerBlob: Int = 1000

    @Option(name: .customLong("history-hours"), help: "Throughput: hours of content to backfill (one blob per minute per content type).")
    var historyHours: Double = 1

    @Option(name: .customLong("blob-buffer-bytes"), help: "Throughput: the fetched-blob budget (default: the gateway's, 32 MiB).")
    var blobBufferBytes: Int?

    @Option(name: .customLong("inflight-bytes"), help: "Throughput: the forwarder's budget (default: the gateway's, 16 MiB).")
    var inFlightBytes: Int?

    @Option(name: .customLong("quota-tenants"), help: "Quota: tenants in all (the first one backfills 7 days of Audit.SharePoint).")
    var quotaTenants: Int = Benchmark.Quota().tenants

    @Option(name: .customLong("quota-seconds"), help: "Quota: how long to measure, after every other unit was polled once.")
    var quotaSeconds: Int = Benchmark.Quota().seconds

    @Option(name: .customLong("fleet-tenants"), help: "Fleet: tenants with no content (5 content types each).")
    var fleetTenants: Int = Benchmark.Fleet().tenants

    @Option(name: .customLong("fleet-seconds"), help: "Fleet: how long to measure, after every unit was polled once.")
    var fleetSeconds: Int = Benchmark.Fleet().seconds

    @Option(name: .customLong("poll-interval-seconds"), help: "Fleet: the poll interval (the gateway's default).")
    var pollIntervalSeconds: Int = Benchmark.Fleet().pollInterval

    @Option(name: .customLong("workers"), help: "Fleet: polls at once (the gateway's default).")
    var workers: Int = Benchmark.Fleet().workers

    func run() async throws {
        try await runReportingErrors {
            LoggingBootstrap.once(level: .error)
            let logger = {
                var logger = Logger(label: "o365-gateway")
                logger.logLevel = .error
                return logger
            }()
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            switch scenario {
            case "throughput":
                var settings = Benchmark.Throughput(tenants: tenants, recordsPerBlob: recordsPerBlob, historyHours: historyHours)
                settings.blobBufferBytes = blobBufferBytes ?? settings.blobBufferBytes
                settings.inFlightBytes = inFlightBytes ?? settings.inFlightBytes
                print(try await Benchmark.throughput(settings, executable: executable, logger: logger))
            case "backfill":
                // One tenant's backfill, about 400,000 records (5 content types × 80 blobs of 1,000).
                print(try await Benchmark.throughput(.init(tenants: 1, recordsPerBlob: 1000, historyHours: 80.0 / 60), executable: executable, logger: logger))
            case "quota":
                print(try await Benchmark.quota(.init(tenants: quotaTenants, seconds: quotaSeconds), executable: executable, logger: logger))
            case "forwarder":
                print(try await Benchmark.forwarder(count: 500_000, executable: executable, logger: logger))
            case "fleet":
                let fleet = Benchmark.Fleet(tenants: fleetTenants, seconds: fleetSeconds, pollInterval: pollIntervalSeconds, workers: workers)
                print(try await Benchmark.fleet(fleet, executable: executable, logger: logger))
            case "all":
                // Each scenario in a fresh process, so peak memory is not carried from one to the next.
                for name in ["throughput", "backfill", "forwarder", "fleet", "quota"] {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: executable)
                    process.arguments = ["bench", "--scenario", name] + Array(CommandLine.arguments.dropFirst(2).filter { !$0.hasPrefix("--scenario") })
                    try process.run()
                    process.waitUntilExit()
                    print("")
                }
            default:
                throw ValidationError("--scenario must be throughput, backfill, forwarder, fleet, quota or all")
            }
        }
    }
}
