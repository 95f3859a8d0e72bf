import NIOCore
import NIOPosix
import NIOSSL

/// One gRPC bidirectional call to UTMStack on a connection of its own: the client side of `plugins.Engine/Input`,
/// `plugins.Engine/Notify` or `plugins.Integration/ProcessLog` (docs/utmstack-stream.md). Messages go out as
/// pre-encoded bytes, many to a DATA frame; acknowledgements come back in batches, one per read from the socket, so
/// neither direction costs a task switch per message. The HTTP/2 framing is ``GRPCCallHandler``.
final class EngineStream: Sendable {
    enum Method: String, Sendable {
        case input = "/plugins.Engine/Input"
        case notify = "/plugins.Engine/Notify"
        case processLog = "/plugins.Integration/ProcessLog"
    }

    private let channel: any Channel
    /// The ids the engine acknowledged, in order, one element per read. Ends when the engine ends the call:
    /// normally for status OK, else with an ``EngineStreamError``.
    let acknowledgements: AsyncThrowingStream<[String], any Error>

    private init(channel: any Channel, acknowledgements: AsyncThrowingStream<[String], any Error>) {
        self.channel = channel
        self.acknowledgements = acknowledgements
    }

    /// Connects to `endpoint` and starts the call.
    static func open(
        _ endpoint: ForwarderConfiguration.Endpoint, method: Method,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> EngineStream {
        let tls = try endpoint.tls()
        let headerBlock = GRPCCallHandler.encodeHeaderBlock(endpoint.requestHeaders(method))
        guard headerBlock.readableBytes <= GRPCCallHandler.defaultMaxFrame else {
            throw EngineStreamError(description: "the request headers (with the connection key) exceed 16 KiB")
        }
        let (acknowledgements, continuation) = AsyncThrowingStream.makeStream(of: [String].self)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                if let tls {
                    try pipeline.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                }
                try pipeline.addHandler(GRPCCallHandler(headerBlock: headerBlock, continuation: continuation))
                return channel
            }
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
        do {
            let channel =
                switch endpoint {
                case .engineSocket(let path):
                    try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
                case .network(let network):
                    try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                        .connect(host: network.host, port: network.port, channelInitializer: initializer)
                }
            return EngineStream(channel: channel, acknowledgements: acknowledgements)
        } catch {
            continuation.finish(throwing: error)
            throw EngineStreamError(description: "could not connect to UTMStack at \(endpoint.address): \(error)")
        }
    }

    /// Sends pre-encoded messages (``GRPCWire``); returns when they are handed to the socket (HTTP/2 flow control
    /// holds them back while the engine does not read). `endStream` half-closes the call after them.
    func send(_ chunks: [ByteBuffer], endStream: Bool = false) async throws {
        try await channel.writeAndFlush(CallWrite(chunks: chunks, endStream: endStream))
    }

    /// Half-closes the call: nothing more will be sent; the engine ends the call when it has answered everything.
    func finish() async throws { try await send([], endStream: true) }

    /// Closes the connection (and with it the call).
    func close() { channel.close(promise: nil) }
}

/// Why a call to UTMStack ended other than with status OK. Never carries credentials.
struct EngineStreamError: Error, CustomStringConvertible {
    var description: String

    static func status(_ code: String, message: String?) -> EngineStreamError {
        EngineStreamError(description: "UTMStack ended the call with gRPC status \(code)" + (message.map { ": \($0)" } ?? ""))
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
        if let caFile = network.caFile { configuration.trustRoots = .file(caFile) }
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
