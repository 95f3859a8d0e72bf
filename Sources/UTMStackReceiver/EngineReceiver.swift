import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Synchronization
import UTMStackProtocol

/// What a receiver got: counts per UTMStack tenant and data source, and (when asked) every log and message.
public final class ReceivedLogs: Sendable {
    public struct Snapshot: Sendable {
        public var total: Int
        public var byDataSource: [String: Int]
        public var logs: [Plugins_Log]
        public var messages: [Plugins_Message]
    }

    let keepLogs: Bool
    private let state = Mutex(Snapshot(total: 0, byDataSource: [:], logs: [], messages: []))

    public init(keepLogs: Bool) { self.keepLogs = keepLogs }

    public var snapshot: Snapshot { state.withLock { $0 } }
    public var total: Int { state.withLock { $0.total } }

    func record(_ log: Plugins_Log) {
        state.withLock {
            $0.total += 1
            $0.byDataSource[log.dataSource, default: 0] += 1
            if keepLogs { $0.logs.append(log) }
        }
    }

    func record(_ message: Plugins_Message) { state.withLock { $0.messages.append(message) } }
}

/// A UTMStack-compatible engine for local use (demo, tests, benchmarks): serves `plugins.Engine` on a Unix
/// socket and acknowledges every log after `ackDelay`.
public struct EngineReceiver: Service {
    public let socketPath: String
    public let received: ReceivedLogs
    let ackDelay: Duration
    let printLogs: Bool
    let logger: Logger

    public init(
        socketPath: String, received: ReceivedLogs, ackDelay: Duration = .zero, printLogs: Bool = false, logger: Logger
    ) {
        self.socketPath = socketPath
        self.received = received
        self.ackDelay = ackDelay
        self.printLogs = printLogs
        self.logger = logger
    }

    public func run() async throws {
        try FileManager.default.createDirectory(
            atPath: (socketPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let server = GRPCServer(
            transport: HTTP2ServerTransport.Posix(
                address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext),
            services: [EngineService(received: received, ackDelay: ackDelay, printLogs: printLogs)])
        // Cancellation (an abrupt stop, like an engine crash) also stops accepting first: grpc-swift's server
        // traps on a connection accepted after its accept loop was cancelled, and a forwarder reconnects within
        // milliseconds of losing its call.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await server.serve()
            } onGracefulShutdown: {
                server.beginGracefulShutdown()
            }
        } onCancel: {
            server.beginGracefulShutdown()
        }
    }
}

struct EngineService: Plugins_Engine.SimpleServiceProtocol {
    let received: ReceivedLogs
    let ackDelay: Duration
    let printLogs: Bool

    func input(
        request: RPCAsyncSequence<Plugins_Log, any Error>, response: RPCWriter<Plugins_Ack>, context: ServerContext
    ) async throws {
        for try await log in request {
            received.record(log)
            if printLogs { FileHandle.standardOutput.write(Data((log.raw + "\n").utf8)) }
            if ackDelay > .zero { try await Task.sleep(for: ackDelay) }
            var ack = Plugins_Ack()
            ack.lastID = log.id
            try await response.write(ack)
        }
    }

    func notify(
        request: RPCAsyncSequence<Plugins_Message, any Error>, response: RPCWriter<Plugins_Ack>, context: ServerContext
    ) async throws {
        for try await message in request {
            received.record(message)
            var ack = Plugins_Ack()
            ack.lastID = message.id
            try await response.write(ack)
        }
    }
}
