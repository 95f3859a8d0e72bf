import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// How long the admin listener waits for a client, and how many it serves at once, so slow or idle clients cannot
/// hold its connections: a connection that has not sent a whole request head within `idleTimeout` (after it opened,
/// or after its last answer) is closed, and so is one whose request (head and body) is not in within
/// `requestReadTimeout`; connections beyond `maxConnections` are closed as they open.
public struct AdminListenerLimits: Sendable, Equatable {
    public var idleTimeout: Duration
    public var requestReadTimeout: Duration
    public var maxConnections: Int

    public init(idleTimeout: Duration = .seconds(30), requestReadTimeout: Duration = .seconds(30), maxConnections: Int = 256) {
        self.idleTimeout = idleTimeout
        self.requestReadTimeout = requestReadTimeout
        self.maxConnections = maxConnections
    }

    /// The HTTP/1.1 server with these limits (wrap it for TLS).
    public func http1() -> HTTPServerBuilder {
        let connections = ConnectionCount(limit: maxConnections)
        let readTimeout = TimeAmount(requestReadTimeout)
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [
                    ConnectionLimitHandler(connections: connections), RequestReadTimeoutHandler(timeout: readTimeout),
                ],
                idleTimeout: TimeAmount(idleTimeout)))
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// The admin listener's open connections, shared by all of them.
final class ConnectionCount: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Counts one more; false (and not counted) when the limit is reached.
    func admit() -> Bool {
        while true {
            let current = open.load(ordering: .relaxed)
            guard current < limit else { return false }
            if open.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged { return true }
        }
    }

    func release() { open.subtract(1, ordering: .relaxed) }

    var current: Int { open.load(ordering: .relaxed) }
}

/// Closes a connection beyond the limit as soon as it is set up; counts the others until they close.
final class ConnectionLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let connections: ConnectionCount
    private var admitted = false

    init(connections: ConnectionCount) { self.connections = connections }

    func handlerAdded(context: ChannelHandlerContext) {
        admitted = connections.admit()
        if !admitted { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if admitted {
            admitted = false
            connections.release()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else { return }
        context.fireChannelRead(data)
    }
}

/// Closes a connection whose request, once its head arrived, is not read to its end within `timeout`: a client that
/// trickles its body holds nothing for long. (Hummingbird's idle timeout covers the wait for the head.)
final class RequestReadTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            deadline?.cancel()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
