import ArgumentParser
import Foundation
import GatewayApp
import Logging
import ServiceLifecycle
import UTMStackReceiver

struct Receiver: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a UTMStack-compatible engine on a Unix socket that acknowledges every log (for local use).",
        discussion: "Prints a line per second with the logs received; --print writes each record to stdout instead.")

    @Option(name: .customLong("socket"), help: "Unix socket to listen on.")
    var socket: String = "/tmp/o365gw/engine_server.sock"

    @Flag(name: .customLong("print"), help: "Print each received record (one JSON object per line).")
    var printLogs = false

    @Option(name: .customLong("ack-delay-ms"), help: "Delay before each acknowledgement, to imitate a slow engine.")
    var ackDelayMilliseconds: Int = 0

    func run() async throws {
        LoggingBootstrap.once(level: .info)
        let logger = Logger(label: "o365-gateway")
        let received = ReceivedLogs(keepLogs: false)
        let receiver = EngineReceiver(
            socketPath: socket, received: received, ackDelay: .milliseconds(ackDelayMilliseconds),
            printLogs: printLogs, logger: logger)
        let printer = ReceiverStatsPrinter(received: received, enabled: !printLogs)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: receiver), .init(service: printer)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        FileHandle.standardError.write(Data("receiver listening on \(socket)\n".utf8))
        try await group.run()
    }
}

/// Prints the receiver's counts once a second.
struct ReceiverStatsPrinter: Service {
    let received: ReceivedLogs
    let enabled: Bool

    func run() async throws {
        guard enabled else { return try await gracefulShutdown() }
        var last = 0
        while !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(1))
            let total = received.total
            if total != last {
                FileHandle.standardOutput.write(Data("received \(total) logs (+\(total - last)/s)\n".utf8))
                last = total
            }
        }
    }
}
