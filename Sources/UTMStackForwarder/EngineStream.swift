import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// One gRPC bidirectional call to UTMStack on a connection of its own: the client side of `plugins.Engine/Input`,
/// `plugins.Engine/Notify` or `plugins.Integration/ProcessLog`, spoken directly on SwiftNIO's HTTP/2
/// (docs/utmstack-stream.md). Messages go out as pre-encoded bytes, many to a DATA frame; acknowledgements come
/// back in batches, one per read from the socket, so neither direction costs a task switch per message.
final class EngineStream: Sendable {
    enum Method: String, Sendable {
        case input = "/plugins.Engine/Input"
        case notify = "/plugins.Engine/Notify"
        case processLog = "/plugins.Integration/ProcessLog"
    }

    private let connection: any Channel
    private let stream: any Channel
    /// The ids the engine acknowledged, in order, one element per read. Ends when the engine ends the call:
    /// normally for status OK, else with an ``EngineStreamError``.
    let acknowledgements: AsyncThrowingStream<[String], any Error>

    private init(connection: any Channel, stream: any Channel, acknowledgements: AsyncThrowingStream<[String], any Error>) {
        self.connection = connection
        self.stream = stream
        self.acknowledgements = acknowledgements
    }

    /// Connects to `endpoint` and starts the call.
    static func open(
        _ endpoint: ForwarderConfiguration.Endpoint, method: Method,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> EngineStream {
        let tls = try endpoint.tls()
        let initializer: @Sendable (any Channel) -> EventLoopFuture<(any Channel, NIOHTTP2Handler.StreamMultiplexer)> = {
            channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                if let tls {
                    try pipeline.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                }
                var connection = NIOHTTP2Handler.ConnectionConfiguration()
                connection.initialSettings = [
                    HTTP2Setting(parameter: .enablePush, value: 0),
                    HTTP2Setting(parameter: .maxConcurrentStreams, value: 1),
                    HTTP2Setting(parameter: .initialWindowSize, value: windowSize),
                    HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
                ]
                connection.targetWindowSize = windowSize
                var stream = NIOHTTP2Handler.StreamConfiguration()
                stream.targetWindowSize = windowSize
                let multiplexer = try pipeline.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: connection, streamConfiguration: stream,
                    inboundStreamInitializer: { pushed in pushed.close() })
                return (channel, multiplexer)
            }
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
        let (connection, multiplexer) =
            switch endpoint {
            case .engineSocket(let path):
                try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            case .network(let network):
                try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(host: network.host, port: network.port, channelInitializer: initializer)
            }
        do {
            let (acknowledgements, continuation) = AsyncThrowingStream.makeStream(of: [String].self)
            let stream = try await multiplexer.createStreamChannel { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(ResponseHandler(continuation))
                }
            }.get()
            try await stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: endpoint.requestHeaders(method))))
            return EngineStream(connection: connection, stream: stream, acknowledgements: acknowledgements)
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Sends pre-encoded messages (``GRPCWire``), a DATA frame per chunk, with one flush; returns when they are
    /// handed to the socket (HTTP/2 flow control holds it back while the engine does not read). `endStream`
    /// half-closes the call after them.
    func send(_ chunks: [ByteBuffer], endStream: Bool = false) async throws {
        guard let last = chunks.last else { return }
        for chunk in chunks.dropLast() {
            stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(chunk))), promise: nil)
        }
        try await stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(last), endStream: endStream)))
    }

    /// Half-closes the call: nothing more will be sent; the engine ends the call when it has answered everything.
    func finish() async throws { try await send([ByteBuffer()], endStream: true) }

    /// Closes the connection (and with it the call).
    func close() { connection.close(promise: nil) }

    private static let windowSize = 1 << 20
}

/// Why a call to UTMStack ended other than with status OK. Never carries credentials.
struct EngineStreamError: Error, CustomStringConvertible {
    var description: String

    static func status(_ code: String, message: String?) -> EngineStreamError {
        EngineStreamError(description: "UTMStack ended the call with gRPC status \(code)" + (message.map { ": \($0)" } ?? ""))
    }
}

/// Reads the response of one call: checks its headers, turns DATA frames into acknowledged ids (handed over once
/// per read, not once per message) and its trailers into the end of ``EngineStream/acknowledgements``.
private final class ResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload

    private let continuation: AsyncThrowingStream<[String], any Error>.Continuation
    private var reader = GRPCMessageReader()
    private var ids: [String] = []
    private var sawHeaders = false
    private var ended = false

    init(_ continuation: AsyncThrowingStream<[String], any Error>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !ended else { return }
        switch unwrapInboundIn(data) {
        case .headers(let headers) where !sawHeaders:
            sawHeaders = true
            let status = headers.headers.first(name: ":status") ?? "none"
            guard status == "200" else {
                return end(context, EngineStreamError(description: "UTMStack answered the call with HTTP status \(status)"))
            }
            if headers.endStream { return endWithTrailers(context, headers.headers) }  // a trailers-only response
            let contentType = headers.headers.first(name: "content-type") ?? ""
            guard contentType.hasPrefix("application/grpc") else {
                return end(context, EngineStreamError(description: "UTMStack answered with content type '\(contentType)', not gRPC"))
            }
        case .headers(let trailers):
            endWithTrailers(context, trailers.headers)
        case .data(let frame):
            guard sawHeaders, case .byteBuffer(let bytes) = frame.data else {
                return end(context, EngineStreamError(description: "UTMStack sent data before the response headers"))
            }
            reader.append(bytes)
            do {
                while let message = try reader.next() { ids.append(try GRPCWire.lastID(ofAck: message)) }
            } catch {
                return end(context, EngineStreamError(description: "\(error)"))
            }
            if frame.endStream { end(context, EngineStreamError(description: "UTMStack ended the call without a status")) }
        case .rstStream(let code):
            end(context, EngineStreamError(description: "UTMStack reset the call (\(code))"))
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(context, EngineStreamError(description: "the connection to UTMStack closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end(context, error)
        context.close(promise: nil)
    }

    private func handOver() {
        guard !ids.isEmpty else { return }
        continuation.yield(ids)
        ids.removeAll(keepingCapacity: true)
    }

    private func endWithTrailers(_ context: ChannelHandlerContext, _ trailers: HPACKHeaders) {
        guard !reader.isMidMessage else {
            return end(context, EngineStreamError(description: "UTMStack ended the call in the middle of a message"))
        }
        let status = trailers.first(name: "grpc-status") ?? "missing"
        if status == "0" { return end(context, nil) }
        let message = trailers.first(name: "grpc-message").map { $0.removingPercentEncoding ?? $0 }
        end(context, EngineStreamError.status(status, message: message))
    }

    /// Hands over what was read, then ends the acknowledgements (with `error` unless nil).
    private func end(_ context: ChannelHandlerContext, _ error: (any Error)?) {
        guard !ended else { return }
        handOver()
        ended = true
        continuation.finish(throwing: error)
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
        // SNI carries names only; an address is still verified against the certificate's IP entries.
        let isAddress = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        return TLS(context: try NIOSSLContext(configuration: configuration), serverHostname: isAddress ? nil : name)
    }

    func requestHeaders(_ method: EngineStream.Method) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":method", value: "POST")
        switch self {
        case .engineSocket:
            headers.add(name: ":scheme", value: "http")
            headers.add(name: ":path", value: method.rawValue)
            headers.add(name: ":authority", value: "localhost")
        case .network(let network):
            headers.add(name: ":scheme", value: "https")
            headers.add(name: ":path", value: method.rawValue)
            headers.add(name: ":authority", value: "\(network.serverName ?? network.host):\(network.port)")
        }
        headers.add(name: "content-type", value: "application/grpc")
        headers.add(name: "te", value: "trailers")
        headers.add(name: "user-agent", value: "o365-gateway")
        if case .network(let network) = self {
            headers.add(name: "connection-key", value: network.connectionKey.unredacted, indexing: .neverIndexed)
        }
        return headers
    }
}
