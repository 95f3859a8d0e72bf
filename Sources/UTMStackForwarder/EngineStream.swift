import GatewayCore
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// One gRPC bidirectional call to UTMStack on a connection of its own: the client side of `plugins.Engine/Input`,
/// `plugins.Engine/Notify` or `plugins.Integration/ProcessLog` (docs/utmstack-stream.md). Messages go out as
/// pre-encoded bytes, many to a DATA frame; acknowledgements come back in batches, one per read from the socket, so
/// neither direction costs a task switch per message. The HTTP/2 framing is ``GRPCCallHandler``. Every wait is
/// bounded or cancellable: connecting and the TLS handshake have a timeout, and cancelling a send closes the
/// connection (a peer that stopped reading never holds a task).
final class EngineStream: Sendable {
    enum Method: String, Sendable {
        case input = "/plugins.Engine/Input"
        case notify = "/plugins.Engine/Notify"
        case processLog = "/plugins.Integration/ProcessLog"
    }

    private let channel: any Channel
    /// What the engine answers, in order: acknowledged ids (one element per read) and a GOAWAY that lets the call
    /// finish. Ends when the engine ends the call: normally for status OK, else with an ``EngineStreamError``.
    let events: AsyncThrowingStream<CallEvent, any Error>

    private init(channel: any Channel, events: AsyncThrowingStream<CallEvent, any Error>) {
        self.channel = channel
        self.events = events
    }

    /// Connects to `endpoint` and starts the call. Connecting, and on the network path the TLS handshake, must each
    /// finish within `connectTimeout`; the handshake must agree on HTTP/2 (ALPN `h2`).
    static func open(
        _ endpoint: ForwarderConfiguration.Endpoint, method: Method, connectTimeout: Duration = .seconds(10),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> EngineStream {
        let connectTimeout = TimeAmount.nanoseconds(Int64(connectTimeout.seconds * 1e9))
        let tls: ForwarderConfiguration.Endpoint.TLS?
        do {
            tls = try endpoint.tls()
        } catch {
            throw EngineStreamError(description: "the TLS settings for UTMStack at \(endpoint.address) cannot be used: \(error)", failure: .tlsHandshake)
        }
        let headerBlock = GRPCCallHandler.encodeHeaderBlock(endpoint.requestHeaders(method))
        guard headerBlock.readableBytes <= GRPCCallHandler.defaultMaxFrame else {
            throw EngineStreamError(description: "the request headers (with the connection key) exceed 16 KiB", failure: .protocolError)
        }
        let (events, continuation) = AsyncThrowingStream.makeStream(of: CallEvent.self)
        let handshake = group.any().makePromise(of: String?.self)
        let ready = group.any().makePromise(of: Void.self)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                if let tls {
                    try pipeline.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                    try pipeline.addHandler(HandshakeWatcher(promise: handshake))
                } else {
                    handshake.succeed(nil)
                }
                try pipeline.addHandler(GRPCCallHandler(headerBlock: headerBlock, continuation: continuation, ready: ready))
                return channel
            }
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(connectTimeout)
        let channel: any Channel
        do {
            channel =
                switch endpoint {
                case .engineSocket(let path):
                    try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
                case .network(let network):
                    try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                        .connect(host: network.host, port: network.port, channelInitializer: initializer)
                }
        } catch {
            continuation.finish(throwing: error)
            handshake.fail(error)
            ready.fail(error)
            throw EngineStreamError(
                description: "could not connect to UTMStack at \(endpoint.address): \(error)", failure: EngineStreamError.connectFailure(error))
        }
        let stream = EngineStream(channel: channel, events: events)
        if tls != nil { try await handshaken(stream, handshake, endpoint: endpoint, connectTimeout: connectTimeout) }
        // Open once the engine's HTTP/2 preface arrived: nothing is written to an engine that accepts connections
        // and answers nothing (frozen), where it would be read, and acknowledged to no one, when it thaws.
        let timeout = channel.eventLoop.scheduleTask(in: connectTimeout) {
            ready.fail(EngineStreamError(
                description: "UTMStack at \(endpoint.address) accepted the connection but did not start HTTP/2 within "
                    + "\(connectTimeout.nanoseconds / 1_000_000_000) s", failure: .timedOut))
        }
        do {
            try await withTaskCancellationHandler {
                try await ready.futureResult.get()
            } onCancel: {
                ready.fail(CancellationError())
            }
            timeout.cancel()
            return stream
        } catch {
            timeout.cancel()
            stream.close()
            throw error
        }
    }

    /// Waits for the TLS handshake: bounded, cancellable, and it must choose HTTP/2.
    private static func handshaken(
        _ stream: EngineStream, _ handshake: EventLoopPromise<String?>, endpoint: ForwarderConfiguration.Endpoint,
        connectTimeout: TimeAmount
    ) async throws {
        let channel = stream.channel
        let timeout = channel.eventLoop.scheduleTask(in: connectTimeout) {
            handshake.fail(EngineStreamError(description: "the TLS handshake with UTMStack at \(endpoint.address) did not finish within \(connectTimeout.nanoseconds / 1_000_000_000) s", failure: .timedOut))
        }
        do {
            let protocolName = try await withTaskCancellationHandler {
                try await handshake.futureResult.get()
            } onCancel: {
                handshake.fail(CancellationError())
            }
            timeout.cancel()
            guard protocolName == "h2" else {
                throw EngineStreamError(
                    description: "UTMStack at \(endpoint.address) did not agree to HTTP/2 in the TLS handshake (ALPN: "
                        + "\(protocolName ?? "none")); gRPC needs HTTP/2 end to end, so a proxy or load balancer in the way "
                        + "must pass HTTP/2 through (or terminate TLS with h2 and speak HTTP/2 to UTMStack)", failure: .tlsHandshake)
            }
        } catch {
            timeout.cancel()
            stream.close()
            if error is EngineStreamError || error is CancellationError { throw error }
            throw EngineStreamError(description: "the TLS handshake with UTMStack at \(endpoint.address) failed: \(error)", failure: .tlsHandshake)
        }
    }

    /// Sends pre-encoded messages (``GRPCWire``); returns when they are handed to the socket (HTTP/2 flow control
    /// holds them back while the engine does not read). `endStream` half-closes the call after them. Cancelling the
    /// waiting task closes the connection, which fails the write.
    func send(_ chunks: [ByteBuffer], endStream: Bool = false) async throws {
        try await withTaskCancellationHandler {
            try await channel.writeAndFlush(CallWrite.messages(chunks, endStream: endStream))
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// Asks the engine for a PING answer within `timeout`; without one the call ends with an error.
    func ping(timeout: Duration) {
        channel.writeAndFlush(CallWrite.ping(timeout: .nanoseconds(Int64(timeout.seconds * 1e9))), promise: nil)
    }

    /// Half-closes the call: nothing more will be sent; the engine ends the call when it has answered everything.
    func finish() async throws { try await send([], endStream: true) }

    /// Closes the connection (and with it the call).
    func close() { channel.close(promise: nil) }
}

/// Why a call to UTMStack ended other than with status OK. Never carries credentials. The description is for the
/// gateway's log; what the API and the tenants' status show is ``failure``, in fixed words.
struct EngineStreamError: Error, CustomStringConvertible {
    var description: String
    var failure: DestinationHealth.Failure
    /// The gRPC status the engine ended the call with, when it did, and its message.
    var status: Int?
    var statusMessage: String?

    init(description: String, failure: DestinationHealth.Failure = .lost, status: Int? = nil, statusMessage: String? = nil) {
        self.description = description
        self.failure = failure
        self.status = status
        self.statusMessage = statusMessage
    }

    static func status(_ code: String, message: String?) -> EngineStreamError {
        let number = Int(code)
        let name = number.flatMap { GRPCStatusName.of($0) }.map { "\($0) (\(code))" } ?? code
        return EngineStreamError(
            description: "UTMStack ended the call with gRPC status \(name)" + (message.map { ": \($0)" } ?? ""), failure: .refused,
            status: number, statusMessage: message)
    }

    /// A connection attempt that timed out, or one refused or unreachable (no listener, no route, no such socket,
    /// a name that does not resolve).
    static func connectFailure(_ error: any Error) -> DestinationHealth.Failure {
        func isTimeout(_ error: any Error) -> Bool {
            if case ChannelError.connectTimeout = error { return true }
            return false
        }
        if isTimeout(error) { return .timedOut }
        if let error = error as? NIOConnectionError, !error.connectionErrors.isEmpty,
            error.connectionErrors.allSatisfy({ isTimeout($0.error) })
        {
            return .timedOut
        }
        return .unreachable
    }

    /// Whose fault the end of the call is (``CallEndBlame/of(status:message:)``); an end without a status (a lost
    /// connection, a reset, a deadline) is the destination's.
    var blame: CallEndBlame { CallEndBlame.of(status: status, message: statusMessage) }
}

/// Whose fault it is that the engine ended a call with an error status: the log's, when the status says the engine
/// refuses a message for what it is (it would refuse it again on any connection, at any time), or the destination's
/// otherwise (an engine in trouble, overloaded or restarting, or refusing the credentials), which passes or must be
/// fixed there. A log's fault leads to isolating the log (``DeliveryWindow``) and, refused alone, to setting it aside;
/// the destination's to holding the logs and sending them again after a backoff, as for an unreachable engine.
enum CallEndBlame: Equatable, Sendable {
    case theLog
    case theDestination

    /// INVALID_ARGUMENT; RESOURCE_EXHAUSTED about a message's size (grpc-go: "grpc: received message larger than max
    /// (N vs. M)"; any other, such as a rate limit, is the destination's); INTERNAL about a message the engine cannot
    /// decode (grpc-go: "grpc: failed to unmarshal the received message"). Everything else, UNKNOWN and INTERNAL
    /// included (what a failing handler or a crashing engine answers), is the destination's.
    static func of(status: Int?, message: String?) -> CallEndBlame {
        let message = message?.lowercased() ?? ""
        switch status {
        case 3: return .theLog
        case 8 where message.contains("larger than max") || message.contains("too large"): return .theLog
        case 13 where message.contains("unmarshal"): return .theLog
        default: return .theDestination
        }
    }
}

/// gRPC status codes by name (grpc/doc/statuscodes.md).
enum GRPCStatusName {
    static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    static func of(_ code: Int) -> String? { names.indices.contains(code) ? names[code] : nil }
}

/// Fulfils the handshake promise with the protocol ALPN chose, or fails it when the connection ends first.
private final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let promise: EventLoopPromise<String?>

    init(promise: EventLoopPromise<String?>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated) = event {
            promise.succeed(negotiated)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(EngineStreamError(description: "the connection closed during the TLS handshake", failure: .tlsHandshake))
        context.fireChannelInactive()
    }
}

extension ForwarderConfiguration.Endpoint {
    /// The call that carries logs: `Engine/Input` on the engine socket, `Integration/ProcessLog` on the network.
    var logMethod: EngineStream.Method {
        switch self {
        case .engineSocket: .input
        case .network: .processLog
        }
    }

    /// Where it connects, for messages.
    var address: String {
        switch self {
        case .engineSocket(let path): path
        case .network(let network): "\(network.host):\(network.port)"
        }
    }

    struct TLS: Sendable {
        var context: NIOSSLContext
        var serverHostname: String?
    }

    /// TLS for the network service (ALPN `h2`, the given CA or the system's trust store); nil on the Unix socket.
    func tls() throws -> TLS? {
        guard case .network(let network) = self else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = ["h2"]
        switch network.ca {
        case .file(let path): configuration.trustRoots = .file(path)
        case .pem(let pem): configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
        case nil: break
        }
        let name = network.serverName ?? network.host
        // SNI carries names only; a certificate for an address is verified against the connected address.
        let isAddress = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        return TLS(context: try NIOSSLContext(configuration: configuration), serverHostname: isAddress ? nil : name)
    }

    /// The request headers of a call, pseudo-headers first; the connection key is marked secret.
    func requestHeaders(_ method: EngineStream.Method) -> [(name: String, value: String, secret: Bool)] {
        var headers: [(name: String, value: String, secret: Bool)] = [(":method", "POST", false)]
        switch self {
        case .engineSocket:
            headers += [(":scheme", "http", false), (":path", method.rawValue, false), (":authority", "localhost", false)]
        case .network(let network):
            headers += [
                (":scheme", "https", false), (":path", method.rawValue, false),
                (":authority", "\(network.serverName ?? network.host):\(network.port)", false),
            ]
        }
        headers += [("content-type", "application/grpc", false), ("te", "trailers", false), ("user-agent", "o365-gateway", false)]
        if case .network(let network) = self { headers.append(("connection-key", network.connectionKey.unredacted, true)) }
        return headers
    }
}
