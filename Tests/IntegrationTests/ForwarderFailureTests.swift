import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Testing
import UTMStackForwarder

/// The forwarder against grpc-go (the implementation UTMStack's engine uses) failing partially: hung, replaced,
/// going away, failing for a while, refusing logs; and against TLS peers that never finish the handshake or speak HTTP/1.1 only.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ForwarderFailureTests {
    func configuration(_ socket: String, ackTimeout: Duration = .seconds(3), maxMessageBytes: Int = ForwarderConfiguration.grpcDefaultMaxMessageBytes) -> ForwarderConfiguration {
        ForwarderConfiguration(
            endpoint: .engineSocket(path: socket), initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(500),
            drainTimeout: .seconds(2), ackTimeout: ackTimeout, keepaliveInterval: .seconds(1), keepaliveTimeout: .seconds(1),
            maxMessageBytes: maxMessageBytes)
    }

    func log(_ id: String, raw: String) -> OutboundLog {
        OutboundLog(id: id, dataType: "o365", dataSource: "Contoso", timestamp: "2026-11-01T10:00:00Z", tenantID: "utm", raw: raw)
    }

    /// The reported failure: the engine hangs (SIGSTOP, its connection open) and an orchestrator starts a new one on
    /// the same socket. The frozen connection is given up within the deadlines and everything reaches the new engine,
    /// in order; nothing is lost.
    @Test func aFrozenEngineIsGivenUpAndItsReplacementGetsEverything() async throws {
        let socket = temporarySocketPath()
        let first = try await GoEngine.start(socket: socket)
        defer { first.stop() }
        let logs = syntheticLogs(0..<2000)
        try await withForwarder(configuration(socket)) { forwarder in
            try await forwarder.deliver(Array(logs[0..<500]))
            first.freeze()
            let ticket = try await forwarder.submit(Array(logs[500...]))
            try await Task.sleep(for: .milliseconds(500))
            let second = try await GoEngine.start(socket: socket)
            defer { second.stop() }
            let replaced = ContinuousClock.now
            try await forwarder.waitDelivered(ticket)
            let took = ContinuousClock.now - replaced
            // Keepalive 1 s and its PING's 1 s, or the 3 s acknowledgement deadline, plus a reconnect.
            #expect(took < .seconds(6), "delivery resumed \(took) after the replacement started")
            #expect(second.logIDs == logs[500...].map(\.id), "the rest, in order, on the new engine")
        }
        #expect(first.logIDs == logs[0..<500].map(\.id), "the frozen engine acknowledged nothing more")
    }

    /// A GOAWAY (grpc-go's maximum connection age) is drained: the forwarder stops sending on the old connection,
    /// half-closes, takes the last acknowledgements and continues on a new one; nothing is lost or sent twice.
    @Test func aGoAwayIsDrainedAndFollowedByANewConnection() async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(socket: socket, ["-max-connection-age", "700ms", "-max-connection-age-grace", "30s"])
        defer { engine.stop() }
        let logs = syntheticLogs(0..<3000)
        try await withForwarder(configuration(socket)) { forwarder in
            var last = DeliveryTicket.alreadyDelivered
            for start in stride(from: 0, to: logs.count, by: 100) {
                last = try await forwarder.submit(Array(logs[start..<start + 100]))
                try await Task.sleep(for: .milliseconds(100))
            }
            try await forwarder.waitDelivered(last)
        }
        #expect(engine.calls >= 3, "reconnected after each GOAWAY (\(engine.calls) calls)")
        #expect(engine.logIDs == logs.map(\.id), "every log once, in order: drained, not resent")
    }

    /// An engine that takes long to acknowledge but answers PINGs keeps its connection: the keepalive PINGs are
    /// spaced so that grpc-go's enforcement (which counts pings on a silent connection) never sends GOAWAY.
    @Test func aSlowEngineThatAnswersPingsKeepsItsConnection() async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(socket: socket, ["-ack-delay", "1500ms"])
        defer { engine.stop() }
        let logs = syntheticLogs(0..<5)
        try await withForwarder(configuration(socket, ackTimeout: .seconds(30))) { forwarder in
            try await forwarder.deliver(logs)
        }
        #expect(engine.logIDs == logs.map(\.id))
        #expect(engine.calls == 1, "one call throughout")
    }

    /// A log the engine refuses (it ends the call with INVALID_ARGUMENT) is isolated, then set aside after three
    /// calls ended on it alone; every other log is delivered, in order.
    @Test func aLogTheEngineRefusesIsSetAsideAndTheRestDelivered() async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(socket: socket, ["-refuse", "POISON"])
        defer { engine.stop() }
        var poisoned = syntheticLogs(0..<300)
        poisoned[150] = log(poisoned[150].id, raw: #"{"Id":"poisoned-record","Operation":"POISON"}"#)
        let logs = poisoned
        let deadLetters = MemoryDeadLetterStore()
        let tenant = TenantID()
        try await withForwarder(configuration(socket), deadLetters: deadLetters) { forwarder in
            var tickets: [DeliveryTicket] = []
            for start in stride(from: 0, to: logs.count, by: 50) {
                var batch = OutboundBatch(Array(logs[start..<start + 50]))
                batch.origin = LogOrigin(tenant: tenant, contentType: .exchange, contentID: "blob-\(start / 50)")
                tickets.append(try await forwarder.submit(batch))
            }
            for ticket in tickets { try await forwarder.waitDelivered(ticket) }
        }
        #expect(engine.logIDs == logs.map(\.id).filter { $0 != logs[150].id })
        // The first call, the halvings of the suspects, three with the culprit alone, then the rest; on a loaded
        // machine a PING answered later than its 1 s deadline may add a reconnect, which changes nothing above
        // (nothing twice, nothing lost).
        #expect(engine.calls >= 5, "the first call, the isolation, three with the culprit alone, then the rest")
        let letters = try await deadLetters.list(tenant: tenant, limit: 10)
        let letter = try #require(letters.first)
        #expect(letters.count == 1)
        #expect(letter.letter.logID == logs[150].id && letter.letter.recordID == "poisoned-record")
        #expect(letter.letter.contentID == "blob-3" && letter.letter.contentType == .exchange)
        #expect(letter.letter.reason == "refused_by_engine" && letter.letter.detail.contains("INVALID_ARGUMENT"))
        let stored = try #require(try await deadLetters.get(letter.id))
        #expect(stored.letter.message.count > 5, "the message is kept, to be sent again")
    }

    /// The reported failure (issue 27): an engine in trouble ends every call with INTERNAL, UNKNOWN or a
    /// RESOURCE_EXHAUSTED that is not about a message's size, for 10 s. That is no log's fault: the logs are held and
    /// resent with backoff, the destination shows unavailable meanwhile, nothing is set aside, and once the engine
    /// recovers every log arrives, once, in order. (Before, each status made the first log in flight a suspect, and
    /// three failed calls set it aside: an engine failing for a while dead-lettered the logs it happened to get.)
    @Test(arguments: [(13, "internal error"), (2, "the handler failed"), (8, "too many requests, try again later")])
    func anEngineFailingForAWhileLosesNothingAndSetsNothingAside(_ code: Int, _ message: String) async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(
            socket: socket, ["-fail-for", "10s", "-fail-status", "\(code)", "-fail-message", message])
        defer { engine.stop() }
        let logs = syntheticLogs(0..<300)
        let deadLetters = MemoryDeadLetterStore()
        try await withForwarder(configuration(socket, ackTimeout: .seconds(30)), deadLetters: deadLetters) { forwarder in
            var tickets: [DeliveryTicket] = []
            for start in stride(from: 0, to: logs.count, by: 50) {
                tickets.append(try await forwarder.submit(Array(logs[start..<start + 50])))
            }
            let unavailable = try await eventually(timeout: .seconds(5)) { await forwarder.health.connection == .unavailable }
            #expect(unavailable, "the destination shows unavailable while its engine fails")
            for ticket in tickets { try await forwarder.waitDelivered(ticket) }
            #expect(await forwarder.health.connection == .connected)
        }
        let letters = try await deadLetters.list(tenant: nil, limit: 10)
        #expect(letters.isEmpty, "nothing set aside: \(letters.map(\.letter.detail))")
        #expect(engine.logIDs == logs.map(\.id), "every log once, in order")
        #expect(engine.calls > 5, "the engine failed calls for a while (\(engine.calls) calls)")
    }

    /// grpc-go refuses a message over 4 MiB with RESOURCE_EXHAUSTED. With the gateway's limit at its default (the
    /// same 4 MiB), such a log is set aside without being sent; with a higher limit configured, the engine's refusal
    /// sets it aside all the same.
    @Test func aLogOverTheEnginesLimitIsSetAside() async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(socket: socket)
        defer { engine.stop() }
        let big = log("big", raw: #"{"Id":"big-record","Pad":""# + String(repeating: "x", count: 5 << 20) + #""}"#)
        let around = syntheticLogs(0..<20)
        for (limit, reason, detail) in [
            (ForwarderConfiguration.grpcDefaultMaxMessageBytes, "message_too_large", "over the engine's limit"),
            (8 << 20, "refused_by_engine", "RESOURCE_EXHAUSTED"),
        ] {
            let callsBefore = engine.calls
            let deadLetters = MemoryDeadLetterStore()
            try await withForwarder(configuration(socket, maxMessageBytes: limit), deadLetters: deadLetters) { forwarder in
                try await forwarder.deliver(Array(around[0..<10]) + [big] + Array(around[10...]))
            }
            let letter = try #require(try await deadLetters.list(tenant: nil, limit: 10).first)
            #expect(letter.letter.logID == "big" && letter.letter.reason == reason && letter.letter.detail.contains(detail), "\(letter.letter.detail)")
            #expect(letter.bytes > 5 << 20)
            if reason == "message_too_large" { #expect(engine.calls - callsBefore == 1, "never sent, no call failed") }
        }
        #expect(engine.logIDs == (around.map(\.id) + around.map(\.id)), "everything else, both times")
    }

    /// Graceful shutdown while the engine is frozen and the writer is held by HTTP/2 flow control: the forwarder
    /// stops within its drain timeout instead of waiting on the write.
    @Test func shutdownWhileFlowControlIsStalledEndsWithinTheDrainTimeout() async throws {
        let socket = temporarySocketPath()
        let engine = try await GoEngine.start(socket: socket)
        defer { engine.stop() }
        var settings = configuration(socket, ackTimeout: .seconds(120))
        settings.inFlightByteBudget = 64 << 20
        let forwarder = UTMStackForwarder(configuration: settings, deadLetters: MemoryDeadLetterStore(), logger: quietLogger)
        let group = ServiceGroup(services: [forwarder], logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await forwarder.deliver(syntheticLogs(0..<10))
            engine.freeze()
            // 8 MB: far more than the socket buffers and grpc-go's flow-control windows take, within the byte budget
            // (so every submission is admitted, and the writer is what waits).
            for start in stride(from: 0, to: 8000, by: 1000) {
                _ = try await forwarder.submit(syntheticLogs(start..<start + 1000, rawSize: 1000))
            }
            try await Task.sleep(for: .seconds(1))
            let started = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            let took = ContinuousClock.now - started
            #expect(took < .seconds(4), "stopped \(took) after the shutdown began (drain timeout 2 s)")
        }
    }

    /// TLS: a peer that accepts the connection and never answers the handshake is given up after the connect
    /// timeout; a proxy that negotiates HTTP/1.1 is named in a clear error. Neither gets a log.
    @Test func tlsHandshakesAreBoundedAndMustChooseHTTP2() async throws {
        let pki = try TestPKI()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("o365gw-alpn-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let caFile = directory.appendingPathComponent("ca.pem").path
        try pki.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pki.serverCertificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem)))
        tls.applicationProtocols = ["http/1.1"]
        let context = try NIOSSLContext(configuration: tls)
        let http1 = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        defer {
            http1.close(promise: nil)
            silent.close(promise: nil)
        }
        for (server, expected) in [
            // A server offering only http/1.1 selects nothing from the client's h2: no ALPN at all, as an HTTP/1.1
            // proxy that knows no ALPN answers too.
            (http1, "did not agree to HTTP/2 in the TLS handshake (ALPN: none)"),
            (silent, "the TLS handshake with UTMStack at 127.0.0.1:\(silent.localAddress!.port!) did not finish within 1 s"),
        ] {
            let capture = LogCapture()
            var settings = ForwarderConfiguration(
                endpoint: .network(.init(host: "127.0.0.1", port: server.localAddress!.port!, ca: .file(caFile),
                                         serverName: "utmstack.test", connectionKey: Secret("federation-key-0123456789"))),
                initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(200))
            settings.connectTimeout = .seconds(1)
            let forwarder = UTMStackForwarder(configuration: settings, deadLetters: MemoryDeadLetterStore(), logger: capture.logger())
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await forwarder.run() }
                defer { group.cancelAll() }
                _ = try await forwarder.submit(syntheticLogs(0..<3))
                let reported = try await eventually(timeout: .seconds(10)) { capture.text.contains(expected) }
                #expect(reported, "\(capture.text.prefix(1000))")
                #expect(!capture.text.contains("federation-key-0123456789"))
            }
        }
    }
}
