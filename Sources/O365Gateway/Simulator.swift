import ArgumentParser
import Foundation
import GatewayApp
import Logging
import MicrosoftSimulator
import ServiceLifecycle

struct Simulator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Office 365 Management Activity API simulator (tokens, subscriptions, content, Graph).",
        discussion: """
            Point a gateway at it with O365GW_LOGIN_URL, O365GW_MANAGE_URL and O365GW_GRAPH_URL set to its address.
            It prints the simulated tenants with their client ids and secrets. Everything is derived from --seed.
            A JSON file given with --config replaces the flags (see docs/simulator.md for its fields).
            """)

    @Option(name: .customLong("listen"), help: "host:port to listen on.")
    var listen: String = "127.0.0.1:9000"

    @Option(name: .customLong("config"), help: "A JSON simulator configuration.")
    var configFile: String?

    @Option(name: .customLong("tenants"), help: "How many healthy tenants to simulate.")
    var tenants: Int = 3

    @Option(name: .customLong("seed"), help: "Seed of all simulated data.")
    var seed: UInt64 = 42

    @Option(name: .customLong("records-per-blob"), help: "Records in each blob.")
    var recordsPerBlob: Int = 20

    @Option(name: .customLong("blob-interval-seconds"), help: "One blob per content type per this many seconds.")
    var blobInterval: Int = 60

    @Option(name: .customLong("history-hours"), help: "How far back content exists at start.")
    var historyHours: Double = 24

    @Option(
        name: .customLong("backlog"),
        help: "CONTENT_TYPE=HOURS: the first tenant's content type has this much history instead (one large tenant).")
    var backlog: String?

    @Option(name: .customLong("throttle-per-minute"), help: "API requests per tenant per minute before AF429.")
    var throttlePerMinute: Int?

    @Option(name: .customLong("fault-every"), help: "Every Nth API request fails with HTTP 500 AF50000.")
    var faultEvery: Int?

    @Flag(name: .customLong("frozen"), help: "Stop producing new blobs after start (default: live).")
    var frozen = false

    func run() async throws {
        LoggingBootstrap.once(level: .notice)
        let logger = Logger(label: "o365-simulator")
        var configuration: SimulatorConfiguration
        if let configFile {
            configuration = try JSONDecoder().decode(SimulatorConfiguration.self, from: Data(contentsOf: URL(fileURLWithPath: configFile)))
        } else {
            configuration = .generated(tenants: tenants, seed: seed)
            configuration.recordsPerBlob = recordsPerBlob
            configuration.blobIntervalSeconds = blobInterval
            configuration.historyHours = historyHours
            configuration.throttlePerMinute = throttlePerMinute
            configuration.faultEvery = faultEvery
            configuration.live = !frozen
            if let backlog {
                let parts = backlog.split(separator: "=")
                guard parts.count == 2, ContentGenerator.contentTypes.contains(String(parts[0])), let hours = Double(parts[1]), hours > 0 else {
                    throw ValidationError("--backlog must be CONTENT_TYPE=HOURS, for example Audit.SharePoint=168")
                }
                configuration.backlog = .init(contentType: String(parts[0]), hours: hours)
            }
        }
        let address = try ListenAddress(parsing: listen)
        let tenants = configuration.tenants
        let simulator = MicrosoftSimulator(
            configuration: configuration, host: address.host, port: address.port, logger: logger,
            onListening: { port in
                var text = "simulator listening on http://\(address.host):\(port)\n"
                for tenant in tenants {
                    text += "  \(tenant.name): tenantId=\(tenant.tenantId.uuidString.lowercased()) clientId=\(tenant.clientId.uuidString.lowercased()) clientSecret=\(tenant.clientSecret ?? "-") mode=\(tenant.mode.rawValue)\n"
                }
                FileHandle.standardOutput.write(Data(text.utf8))
            })
        try await ServiceGroup(
            configuration: .init(services: [.init(service: simulator)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        ).run()
    }
}
