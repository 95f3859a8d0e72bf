import ArgumentParser
import CredentialCrypto
import DevTools
import Foundation
import GatewayApp
import GatewayCore
import Logging
import Metrics
import MicrosoftSimulator
import Prometheus
import UTMStackReceiver

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run everything on this machine and print a live status table with no Microsoft account: a private PostgreSQL, the Microsoft API simulator with three customer tenants, two local UTMStack receivers (destinations default and eu, the tenants split between them) and the gateway.")

    @Option(name: .customLong("listen"), help: "Admin API address host:port (default 127.0.0.1:8080).")
    var listen: String = "127.0.0.1:8080"

    @Option(name: .customLong("duration"), help: "Stop after this many seconds (default: until Ctrl-C).")
    var duration: Int?

    @Option(name: .customLong("log-level"), help: "Log level (default notice).")
    var logLevel: String = "notice"

    func run() async throws {
        try await runReportingErrors {
            guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level") }
            LoggingBootstrap.once(level: level)
            let logger = {
                var logger = Logger(label: "o365-gateway")
                logger.logLevel = level
                return logger
            }()
            let postgres = try LocalPostgres(logger: logger)
            defer { postgres.stop() }
            let database = try postgres.databaseURL
            let databasePort = postgres.port
            _ = try await Gateway.migrate(database, logger: logger)
            let token = Secret(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))
            // Two UTMStack instances (destinations default and eu), as an MSSP with one per region has.
            let socket = postgres.directory.appendingPathComponent("engine.sock").path
            let received = ReceivedLogs(keepLogs: false)
            let receiver = EngineReceiver(socketPath: socket, received: received, logger: logger)
            let euSocket = postgres.directory.appendingPathComponent("engine-eu.sock").path
            let receivedEU = ReceivedLogs(keepLogs: false)
            let receiverEU = EngineReceiver(socketPath: euSocket, received: receivedEU, logger: logger)
            // The Microsoft side: a simulator with three customer tenants producing live data.
            let simulatorPort = LocalPostgres.freePort()
            let simulatorURL = URL(string: "http://127.0.0.1:\(simulatorPort)")!
            let simulated = SimulatorConfiguration.generated(tenants: 3)
            let simulator = MicrosoftSimulator(
                configuration: simulated, port: simulatorPort, logger: logger)
            let keyRing = KeyRing.random()
            try await Gateway.addSocketDestination("eu", socketPath: euSocket, database: database, keyRing: keyRing, logger: logger)
            // The second tenant sends to eu, the others to default.
            try await Gateway.onboard(
                simulated.tenants, database: database, keyRing: keyRing, destination: { $0 == 1 ? "eu" : Destination.defaultName },
                logger: logger)
            let configuration = try GatewayConfiguration(
                database: database, keyRing: keyRing, adminToken: token, listen: try ListenAddress(parsing: listen),
                forwarder: .init(endpoint: .engineSocket(path: socket)),
                microsoft: .init(overrides: .init(login: simulatorURL, manage: simulatorURL, graph: simulatorURL)))
            let metrics = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
            if let duration {
                // Stop the way an operator does (SIGTERM), so the graceful shutdown path is the one exercised.
                Thread.detachNewThread {
                    Thread.sleep(forTimeInterval: TimeInterval(duration))
                    kill(getpid(), SIGTERM)
                }
            }
            try await Gateway.serve(configuration, metrics: metrics, logger: logger, companions: [
                receiver, receiverEU, simulator,
                DemoStatusTable(receivers: [(Destination.defaultName, received), ("eu", receivedEU)], database: database, logger: logger),
            ]) { port in
                printBanner(port: port, token: token, database: databasePort)
            }
        }
    }
}

private func printBanner(port: Int, token: Secret, database: Int) {
    let base = "http://127.0.0.1:\(port)"
    let text = """
        o365-gateway demo is running (private PostgreSQL on 127.0.0.1:\(database); stops with Ctrl-C).
        Admin API: \(base)   (OpenAPI document: \(base)/api/v1/openapi.yaml)
        Three simulated customer tenants are onboarded, one sending to destination eu and two to default (two local
        UTMStack receivers); a status table follows every 5 s. Try:
          export TOKEN=\(token.unredacted)
          curl -s -H "Authorization: Bearer $TOKEN" \(base)/api/v1/tenants
          ID=$(curl -s -H "Authorization: Bearer $TOKEN" \(base)/api/v1/tenants | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
          curl -s -X POST -H "Authorization: Bearer $TOKEN" \(base)/api/v1/tenants/$ID/validate
          curl -s -H "Authorization: Bearer $TOKEN" \(base)/api/v1/destinations/eu

        """
    FileHandle.standardOutput.write(Data(text.utf8))
}
