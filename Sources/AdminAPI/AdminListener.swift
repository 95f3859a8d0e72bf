import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// How long the admin listener waits for a client, and how many it serves at once, so slow or idle clients cannot
/// hold its connections:
/// - a connection that has not sent a whole request head within `idleTimeout` (after it opened, or after its last
///   answer) is closed, and so is one whose request (head and body) is not in within `requestReadTimeout`;
/// - at most `maxConnections` are open: a new one takes the place of the longest idle one (no request in progress;
///   a client trickling a head is idle), and is closed only when every place serves a request. Holding idle
///   connections therefore never locks out a probe or an operator;
/// - an answer sent before its request's body was read (401, 404, 413, ...) closes the connection (`Connection:
///   close`) instead of reading a body nobody wants.
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
        let connections = ConnectionRegistry(limit: maxConnections)
        let readTimeout = TimeAmount(requestReadTimeout)
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [ConnectionGuard(connections: connections, readTimeout: readTimeout)],
                idleTimeout: TimeAmount(idleTimeout)))
    }
}

/// The admin listener's open connections, shared by all of them: which serve a request and which wait idle.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        var channel: any Channel
        var busy: Bool
        var since: NIODeadline
    }

    let limit: Int
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    init(limit: Int) { self.limit = limit }

    /// Registers a new connection; at the limit it takes the place of the longest idle one (closed here). False,
    /// and not registered, when every place serves a request.
    func admit(_ key: ObjectIdentifier, channel: any Channel) -> Bool {
        let outcome: (admitted: Bool, evicted: (any Channel)?) = entries.withLock { entries in
            var evicted: (any Channel)?
            if entries.count >= limit {
                guard let oldest = entries.filter({ !$0.value.busy }).min(by: { $0.value.since < $1.value.since }) else {
                    return (false, nil)
                }
                entries[oldest.key] = nil
                evicted = oldest.value.channel
            }
            entries[key] = Entry(channel: channel, busy: false, since: .now())
            return (true, evicted)
        }
        outcome.evicted?.close(promise: nil)
        return outcome.admitted
    }

    func mark(_ key: ObjectIdentifier, busy: Bool) {
        entries.withLock { entries in
            entries[key]?.busy = busy
            entries[key]?.since = .now()
        }
    }

    func remove(_ key: ObjectIdentifier) { entries.withLock { $0[key] = nil } }

    var count: Int { entries.withLock { $0.count } }
}

/// One connection's limits: its place among `ConnectionRegistry`'s, the deadline for reading a request whose head
/// arrived, and the close after an answer that left its request's body unread.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let connections: ConnectionRegistry
    private let readTimeout: TimeAmount
    private var admitted = false
    private var deadline: Scheduled<Void>?
    /// Requests whose head, and whose end, were read; answers whose end was written (pipelined requests are answered
    /// in order, so answer n is for request n).
    private var headsRead = 0
    private var endsRead = 0
    private var answersEnded = 0

    init(connections: ConnectionRegistry, readTimeout: TimeAmount) {
        self.connections = connections
        self.readTimeout = readTimeout
    }

    private var key: ObjectIdentifier { ObjectIdentifier(self) }

    func handlerAdded(context: ChannelHandlerContext) {
        admitted = connections.admit(key, channel: context.channel)
        if !admitted { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { release() }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    private func release() {
        deadline?.cancel()
        deadline = nil
        if admitted {
            admitted = false
            connections.remove(key)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else { return }
        switch unwrapInboundIn(data) {
        case .head:
            headsRead += 1
            connections.mark(key, busy: true)
            deadline?.cancel()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: readTimeout) { loopBound.value.close(promise: nil) }
        case .end:
            endsRead += 1
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var answer) where endsRead <= answersEnded:
            // Its request's body is still coming: say that this connection ends with the answer.
            answer.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(answer)), promise: promise)
        case .end:
            answersEnded += 1
            if endsRead < answersEnded {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(data).whenComplete { result in
                    promise?.completeWith(result)
                    loopBound.value.close(promise: nil)
                }
                return
            }
            if answersEnded == headsRead { connections.mark(key, busy: false) }
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }
}
