import DequeModule
import Foundation
import GatewayCore
import NIOCore
import NIOHPACK

/// What ``EngineStream`` writes to its channel.
enum CallWrite: Sendable {
    /// Pre-encoded gRPC messages, and whether the call ends (half-closes) after them.
    case messages([ByteBuffer], endStream: Bool)
    /// A PING the peer must answer within `timeout`, else the connection is given up. At most one is outstanding;
    /// asking again meanwhile does nothing.
    case ping(timeout: TimeAmount)
}

/// What the call reports, in order.
enum CallEvent: Sendable {
    /// The ids the engine acknowledged, one element per socket read.
    case acknowledged([String])
    /// The engine sent a GOAWAY that still covers the call: finish it (half-close once everything is acknowledged)
    /// and continue on a new connection.
    case goingAway
}

/// The client side of one gRPC call on an HTTP/2 connection of its own (RFC 9113), framed by hand
/// (docs/utmstack-stream.md). UTMStack answers every log with an `Ack` in a DATA frame of its own, so the cost of
/// an inbound frame is paid once per record: here it is a header read and a slice, not a general HTTP/2 stack.
///
/// It does what a client of one stream must: sends the preface, its SETTINGS and the request HEADERS on stream 1;
/// requires the server's preface to start with SETTINGS; answers SETTINGS and PING; respects the peer's flow-control
/// windows and maximum frame size when sending DATA (queueing what does not fit until WINDOW_UPDATE); reopens its own
/// receive windows with WINDOW_UPDATE once half is used; decodes the response headers and trailers with HPACK
/// (CONTINUATION included); sends PINGs on request and gives the connection up when one is not answered in time;
/// reports a GOAWAY that covers the call (which may then finish) and treats RST_STREAM, a GOAWAY that excludes the
/// call, PUSH_PROMISE and malformed frames as the end of the call, answering a connection error with a GOAWAY of
/// its own. Server push is disabled; unknown frame types are ignored, as the protocol requires.
final class GRPCCallHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = CallWrite
    typealias OutboundOut = ByteBuffer

    static let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    /// Our receive window, for the connection and the stream.
    static let receiveWindow = 1 << 20
    /// The protocol's initial flow-control window and maximum frame size (RFC 9113, 6.5.2), until SETTINGS say
    /// otherwise. We accept frames of that size only (we do not raise it), and our request headers must fit one.
    static let defaultWindow = 65_535
    static let defaultMaxFrame = 16_384
    /// The largest response header block (HEADERS and its CONTINUATIONs) taken from the engine: a peer that sends
    /// CONTINUATION frames without end would otherwise grow it without bound.
    static let maxHeaderBlockBytes = 65_536
    static let streamID: UInt32 = 1

    enum FrameType: UInt8 {
        case data = 0, headers, priority, rstStream, settings, pushPromise, ping, goAway, windowUpdate, continuation
    }

    enum Flag {
        static let endStream: UInt8 = 0x1
        static let ack: UInt8 = 0x1
        static let endHeaders: UInt8 = 0x4
        static let padded: UInt8 = 0x8
        static let priority: UInt8 = 0x20
    }

    private let requestHeaderBlock: ByteBuffer
    private let continuation: AsyncThrowingStream<CallEvent, any Error>.Continuation
    /// Succeeded by the server's SETTINGS preface: the engine speaks HTTP/2 (a frozen one accepts the connection
    /// and says nothing).
    private var ready: EventLoopPromise<Void>?

    // Inbound.
    private var unread: ByteBuffer?
    private var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
    private var partialHeaderBlock: (block: ByteBuffer, endStream: Bool)?
    private var reader = GRPCMessageReader()
    private var ids: [String] = []
    private var sawResponseHeaders = false
    private var sawSettings = false
    private var goingAway = false
    private var ended = false
    private var connectionUnacknowledged = 0
    private var streamUnacknowledged = 0
    private var needsFlush = false

    // Keepalive: the outstanding PING's payload and its deadline.
    private var pingPayload: UInt64 = 0
    private var pingTimeout: Scheduled<Void>?

    // Outbound.
    private var connectionSendWindow = defaultWindow
    private var streamSendWindow = defaultWindow
    private var peerInitialWindow = defaultWindow
    private var peerMaxFrame = defaultMaxFrame
    private var pending = Deque<(bytes: ByteBuffer, endStream: Bool, promise: EventLoopPromise<Void>?)>()
    private var sentEndStream = false

    /// - Parameter headerBlock: the request headers (``encodeHeaderBlock(_:)``), at most 16,384 bytes.
    init(
        headerBlock: ByteBuffer, continuation: AsyncThrowingStream<CallEvent, any Error>.Continuation,
        ready: EventLoopPromise<Void>? = nil
    ) {
        precondition(headerBlock.readableBytes <= Self.defaultMaxFrame, "the request headers must fit one frame")
        requestHeaderBlock = headerBlock
        self.continuation = continuation
        self.ready = ready
    }

    // MARK: Connection start

    func channelActive(context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 128 + requestHeaderBlock.readableBytes)
        out.writeString(Self.preface)
        Self.writeFrameHeader(length: 3 * 6, type: .settings, flags: 0, stream: 0, to: &out)
        for (identifier, value) in [(0x2, 0), (0x3, 0), (0x4, Self.receiveWindow)] as [(UInt16, Int)] {
            out.writeInteger(identifier)
            out.writeInteger(UInt32(value))
        }
        Self.writeFrameHeader(length: 4, type: .windowUpdate, flags: 0, stream: 0, to: &out)
        out.writeInteger(UInt32(Self.receiveWindow - Self.defaultWindow))
        Self.writeFrameHeader(
            length: requestHeaderBlock.readableBytes, type: .headers, flags: Flag.endHeaders, stream: Self.streamID, to: &out)
        out.writeImmutableBuffer(requestHeaderBlock)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        context.fireChannelActive()
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .ping(let timeout):
            guard !ended else {
                promise?.fail(EngineStreamError(description: "the call to UTMStack has ended"))
                return
            }
            sendPing(context, timeout: timeout)
            promise?.succeed()
        case .messages(let messages, let endStream):
            guard !ended, !sentEndStream else {
                promise?.fail(EngineStreamError(description: "the call to UTMStack has ended"))
                return
            }
            var chunks = messages.filter { $0.readableBytes > 0 }
            if chunks.isEmpty { chunks = [ByteBuffer()] }
            for (index, chunk) in chunks.enumerated() {
                let last = index == chunks.count - 1
                pending.append((chunk, last && endStream, last ? promise : nil))
            }
            sentEndStream = endStream
        }
    }

    /// Sends a PING unless one is outstanding; an answer must come within `timeout`.
    private func sendPing(_ context: ChannelHandlerContext, timeout: TimeAmount) {
        guard pingTimeout == nil else { return }
        pingPayload &+= 1
        var out = context.channel.allocator.buffer(capacity: 17)
        Self.writeFrameHeader(length: 8, type: .ping, flags: 0, stream: 0, to: &out)
        out.writeInteger(pingPayload)
        context.write(wrapOutboundOut(out), promise: nil)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pingTimeout = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.pingTimeout = nil
            handler.fail(
                context, code: 0,
                EngineStreamError(description: "UTMStack did not answer a PING within \(timeout.nanoseconds / 1_000_000_000) s: the engine is hung or the connection was dropped",
                    failure: .timedOut))
        }
    }

    func flush(context: ChannelHandlerContext) {
        sendPending(context)
        context.flush()
    }

    /// Writes queued DATA as far as the peer's windows allow, in frames of at most its maximum size.
    private func sendPending(_ context: ChannelHandlerContext) {
        while var head = pending.first {
            if head.bytes.readableBytes == 0 {
                pending.removeFirst()
                if head.endStream {
                    var frame = context.channel.allocator.buffer(capacity: 9)
                    Self.writeFrameHeader(length: 0, type: .data, flags: Flag.endStream, stream: Self.streamID, to: &frame)
                    context.write(wrapOutboundOut(frame), promise: head.promise)
                } else {
                    head.promise?.succeed()
                }
                continue
            }
            let allowed = min(connectionSendWindow, streamSendWindow, peerMaxFrame)
            guard allowed > 0 else { return }
            let size = min(allowed, head.bytes.readableBytes)
            let payload = head.bytes.readSlice(length: size)!
            let last = head.bytes.readableBytes == 0
            var frame = context.channel.allocator.buffer(capacity: 9)
            Self.writeFrameHeader(
                length: size, type: .data, flags: last && head.endStream ? Flag.endStream : 0, stream: Self.streamID,
                to: &frame)
            context.write(wrapOutboundOut(frame), promise: nil)
            context.write(wrapOutboundOut(payload), promise: last ? head.promise : nil)
            connectionSendWindow -= size
            streamSendWindow -= size
            if last { pending.removeFirst() } else { pending[pending.startIndex] = head }
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if unread == nil { unread = bytes } else { unread!.writeBuffer(&bytes) }
        do {
            while !ended, var buffer = unread, buffer.readableBytes >= 9 {
                let start = buffer.readerIndex
                let length = Int(buffer.getInteger(at: start, as: UInt8.self)!) << 16
                    | Int(buffer.getInteger(at: start + 1, as: UInt16.self)!)
                guard length <= Self.defaultMaxFrame else {
                    throw ConnectionError(code: 6, error: protocolError("a frame of \(length) bytes, over the maximum size"))
                }
                guard buffer.readableBytes >= 9 + length else { break }
                let type = buffer.getInteger(at: start + 3, as: UInt8.self)!
                let flags = buffer.getInteger(at: start + 4, as: UInt8.self)!
                let stream = buffer.getInteger(at: start + 5, as: UInt32.self)! & 0x7FFF_FFFF
                buffer.moveReaderIndex(forwardBy: 9)
                let payload = buffer.readSlice(length: length)!
                unread = buffer.readableBytes > 0 ? buffer : nil
                try handleFrame(context, type: type, flags: flags, stream: stream, payload: payload)
            }
        } catch let error as ConnectionError {
            fail(context, code: error.code, error.error)
        } catch {
            fail(context, code: 1, error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver()
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(context, EngineStreamError(description: "the connection to UTMStack closed"))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pingTimeout?.cancel()
        pingTimeout = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end(context, EngineStreamError(description: "the connection to UTMStack failed: \(error)"))
        context.close(promise: nil)
    }

    private func handleFrame(
        _ context: ChannelHandlerContext, type rawType: UInt8, flags: UInt8, stream: UInt32, payload: ByteBuffer
    ) throws {
        let type = FrameType(rawValue: rawType)
        if !sawSettings {
            // The server's connection preface is a SETTINGS frame (RFC 9113, 3.4).
            guard type == .settings, flags & Flag.ack == 0 else { throw protocolError("a server preface without SETTINGS") }
            sawSettings = true
            ready?.succeed(())
            ready = nil
        }
        if let partial = partialHeaderBlock {
            guard type == .continuation, stream == Self.streamID else { throw protocolError("a header block without its CONTINUATION") }
            var block = partial.block
            var fragment = payload
            guard block.readableBytes + fragment.readableBytes <= Self.maxHeaderBlockBytes else {
                throw protocolError("a header block over \(Self.maxHeaderBlockBytes) bytes")
            }
            block.writeBuffer(&fragment)
            if flags & Flag.endHeaders != 0 {
                partialHeaderBlock = nil
                try receiveHeaderBlock(context, block, endStream: partial.endStream)
            } else {
                partialHeaderBlock = (block, partial.endStream)
            }
            return
        }
        switch type {
        case .data:
            try receiveData(context, flags: flags, stream: stream, payload: payload)
        case .headers:
            guard stream == Self.streamID else { throw protocolError("HEADERS on stream \(stream)") }
            var block = try Self.unpadded(payload, flags: flags)
            if flags & Flag.priority != 0 {
                guard block.readSlice(length: 5) != nil else { throw protocolError("a truncated HEADERS frame") }
            }
            if flags & Flag.endHeaders != 0 {
                try receiveHeaderBlock(context, block, endStream: flags & Flag.endStream != 0)
            } else {
                partialHeaderBlock = (block, flags & Flag.endStream != 0)
            }
        case .continuation:
            throw protocolError("a CONTINUATION frame without HEADERS")
        case .rstStream:
            guard payload.readableBytes == 4 else { throw protocolError("a RST_STREAM frame of the wrong size") }
            if stream == Self.streamID {
                let code = payload.getInteger(at: payload.readerIndex, as: UInt32.self)!
                end(context, EngineStreamError(description: "UTMStack reset the call (\(Self.errorName(code)))", failure: .refused))
            }
        case .settings:
            guard stream == 0 else { throw protocolError("SETTINGS on a stream") }
            guard flags & Flag.ack == 0 else {
                guard payload.readableBytes == 0 else { throw ConnectionError(code: 6, error: protocolError("a SETTINGS acknowledgement with a payload")) }
                return
            }
            try applySettings(payload)
            var out = context.channel.allocator.buffer(capacity: 9)
            Self.writeFrameHeader(length: 0, type: .settings, flags: Flag.ack, stream: 0, to: &out)
            context.write(wrapOutboundOut(out), promise: nil)
            sendPending(context)
            needsFlush = true
        case .ping:
            guard stream == 0 else { throw protocolError("PING on a stream") }
            guard payload.readableBytes == 8 else { throw ConnectionError(code: 6, error: protocolError("a PING frame of the wrong size")) }
            guard flags & Flag.ack == 0 else {
                if payload.getInteger(at: payload.readerIndex, as: UInt64.self) == pingPayload {
                    pingTimeout?.cancel()
                    pingTimeout = nil
                }
                return
            }
            var out = context.channel.allocator.buffer(capacity: 17)
            Self.writeFrameHeader(length: 8, type: .ping, flags: Flag.ack, stream: 0, to: &out)
            out.writeImmutableBuffer(payload)
            context.write(wrapOutboundOut(out), promise: nil)
            needsFlush = true
        case .goAway:
            guard payload.readableBytes >= 8 else { throw protocolError("a truncated GOAWAY frame") }
            let lastStream = payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & 0x7FFF_FFFF
            let code = payload.getInteger(at: payload.readerIndex + 4, as: UInt32.self)!
            if lastStream < Self.streamID {
                end(context, EngineStreamError(description: "UTMStack refused the call (GOAWAY, \(Self.errorName(code)))", failure: .refused))
            } else if !goingAway && !ended {
                // A GOAWAY that covers our stream lets the call finish; the connection closes after it.
                goingAway = true
                handOver()
                continuation.yield(.goingAway)
            }
        case .windowUpdate:
            guard payload.readableBytes == 4 else { throw protocolError("a WINDOW_UPDATE frame of the wrong size") }
            let increment = Int(payload.getInteger(at: payload.readerIndex, as: UInt32.self)! & 0x7FFF_FFFF)
            guard increment > 0 else { throw protocolError("a WINDOW_UPDATE of 0") }
            if stream == 0 {
                connectionSendWindow += increment
                guard connectionSendWindow <= Int(Int32.max) else { throw protocolError("a connection window over 2^31-1") }
            } else if stream == Self.streamID {
                streamSendWindow += increment
                guard streamSendWindow <= Int(Int32.max) else { throw protocolError("a stream window over 2^31-1") }
            }
            sendPending(context)
            needsFlush = true
        case .pushPromise:
            throw protocolError("PUSH_PROMISE, though push is disabled")
        case .priority, nil:
            break  // PRIORITY carries nothing for a client; unknown frame types must be ignored.
        }
    }

    private func applySettings(_ payload: ByteBuffer) throws {
        guard payload.readableBytes % 6 == 0 else { throw protocolError("a SETTINGS frame of the wrong size") }
        var settings = payload
        while let identifier = settings.readInteger(as: UInt16.self), let value = settings.readInteger(as: UInt32.self) {
            switch identifier {
            case 0x4:  // INITIAL_WINDOW_SIZE: applies to open streams by its difference (RFC 9113, 6.9.2)
                guard value <= UInt32(Int32.max) else { throw protocolError("an initial window over 2^31-1") }
                streamSendWindow += Int(value) - peerInitialWindow
                peerInitialWindow = Int(value)
            case 0x5:  // MAX_FRAME_SIZE
                guard (UInt32(Self.defaultMaxFrame)...16_777_215).contains(value) else { throw protocolError("a maximum frame size of \(value)") }
                peerMaxFrame = Int(value)
            default:
                break  // HEADER_TABLE_SIZE does not matter to us (our header block uses no dynamic table), the rest
                       // concerns a server.
            }
        }
    }

    private func receiveData(_ context: ChannelHandlerContext, flags: UInt8, stream: UInt32, payload: ByteBuffer) throws {
        guard stream != 0 else { throw protocolError("DATA on stream 0") }
        // The whole frame, padding included, counts against the receive windows, which are given back as soon as
        // half is used: the peer can never run out of window, so there is no overrun to police.
        connectionUnacknowledged += payload.readableBytes
        if connectionUnacknowledged >= Self.receiveWindow / 2 {
            sendWindowUpdate(context, stream: 0, increment: connectionUnacknowledged)
            connectionUnacknowledged = 0
        }
        guard stream == Self.streamID else { return }
        guard sawResponseHeaders else { throw protocolError("DATA before the response headers") }
        streamUnacknowledged += payload.readableBytes
        if streamUnacknowledged >= Self.receiveWindow / 2 && flags & Flag.endStream == 0 {
            sendWindowUpdate(context, stream: Self.streamID, increment: streamUnacknowledged)
            streamUnacknowledged = 0
        }
        reader.append(try Self.unpadded(payload, flags: flags))
        while let message = try reader.next() { ids.append(try GRPCWire.lastID(ofAck: message)) }
        if flags & Flag.endStream != 0 {
            end(context, EngineStreamError(description: "UTMStack ended the call without a status", failure: .protocolError))
        }
    }

    private func sendWindowUpdate(_ context: ChannelHandlerContext, stream: UInt32, increment: Int) {
        var out = context.channel.allocator.buffer(capacity: 13)
        Self.writeFrameHeader(length: 4, type: .windowUpdate, flags: 0, stream: stream, to: &out)
        out.writeInteger(UInt32(increment))
        context.write(wrapOutboundOut(out), promise: nil)
        needsFlush = true
    }

    private func receiveHeaderBlock(_ context: ChannelHandlerContext, _ block: ByteBuffer, endStream: Bool) throws {
        var block = block
        // Decoded even when the call has ended: the HPACK table is the connection's.
        let headers = try decoder.decodeHeaders(from: &block)
        guard !ended else { return }
        if !sawResponseHeaders {
            sawResponseHeaders = true
            let status = headers.first(name: ":status") ?? "none"
            guard status == "200" else {
                return end(context, EngineStreamError(description: "UTMStack answered the call with HTTP status \(status)", failure: .refused))
            }
            if endStream { return endWithTrailers(context, headers) }  // a trailers-only response
            let contentType = headers.first(name: "content-type") ?? ""
            guard contentType.hasPrefix("application/grpc") else {
                return end(context, EngineStreamError(description: "UTMStack answered with content type '\(contentType)', not gRPC", failure: .protocolError))
            }
        } else {
            endWithTrailers(context, headers)
        }
    }

    private func endWithTrailers(_ context: ChannelHandlerContext, _ trailers: HPACKHeaders) {
        guard !reader.isMidMessage else {
            return end(context, EngineStreamError(description: "UTMStack ended the call in the middle of a message", failure: .protocolError))
        }
        let status = trailers.first(name: "grpc-status") ?? "missing"
        if status == "0" { return end(context, nil) }
        let message = trailers.first(name: "grpc-message").map { $0.removingPercentEncoding ?? $0 }
        end(context, EngineStreamError.status(status, message: message))
    }

    // MARK: End

    private func handOver() {
        guard !ids.isEmpty else { return }
        continuation.yield(.acknowledged(ids))
        ids.removeAll(keepingCapacity: true)
    }

    /// Hands over what was read, then ends the acknowledgements (with `error` unless nil) and fails what was
    /// not written.
    private func end(_ context: ChannelHandlerContext, _ error: (any Error)?) {
        guard !ended else { return }
        handOver()
        ended = true
        pingTimeout?.cancel()
        pingTimeout = nil
        continuation.finish(throwing: error)
        let reason = error ?? EngineStreamError(description: "the call to UTMStack has ended")
        ready?.fail(reason)
        ready = nil
        while let write = pending.popFirst() { write.promise?.fail(reason) }
    }

    /// A connection error: ends the call, tells the peer why with a GOAWAY (RFC 9113, 5.4.1), and closes.
    private func fail(_ context: ChannelHandlerContext, code: UInt32, _ error: any Error) {
        end(context, error)
        guard context.channel.isActive else { return }
        var out = context.channel.allocator.buffer(capacity: 17)
        Self.writeFrameHeader(length: 8, type: .goAway, flags: 0, stream: 0, to: &out)
        out.writeInteger(UInt32(0))
        out.writeInteger(code)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        context.close(promise: nil)
    }

    /// A connection error and its HTTP/2 error code (PROTOCOL_ERROR unless said otherwise).
    private struct ConnectionError: Error {
        var code: UInt32
        var error: EngineStreamError
    }

    private func protocolError(_ what: String) -> EngineStreamError {
        EngineStreamError(description: "HTTP/2 protocol error from UTMStack: \(what)", failure: .protocolError)
    }

    /// The name of an HTTP/2 error code (RFC 9113, 7), for messages.
    static func errorName(_ code: UInt32) -> String {
        let names = [
            "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
            "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
        ]
        return code < names.count ? names[Int(code)] : "HTTP/2 error code \(code)"
    }

    // MARK: Encoding

    static func writeFrameHeader(length: Int, type: FrameType, flags: UInt8, stream: UInt32, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        buffer.writeInteger(UInt16(truncatingIfNeeded: length))
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(flags)
        buffer.writeInteger(stream)
    }

    /// The payload without its padding (RFC 9113, 6.1 and 6.2).
    static func unpadded(_ payload: ByteBuffer, flags: UInt8) throws -> ByteBuffer {
        guard flags & Flag.padded != 0 else { return payload }
        var payload = payload
        guard let padding = payload.readInteger(as: UInt8.self), Int(padding) <= payload.readableBytes else {
            throw EngineStreamError(description: "HTTP/2 protocol error from UTMStack: padding longer than its frame", failure: .protocolError)
        }
        return payload.readSlice(length: payload.readableBytes - Int(padding))!
    }

    /// An HPACK header block of literal fields with literal names and no Huffman coding (RFC 7541, 6.2.2 and
    /// 6.2.3): nothing enters the peer's dynamic table, so its size never matters. Headers marked `secret` are
    /// never-indexed literals, which no intermediary may keep in a table either. Pseudo-headers come first.
    static func encodeHeaderBlock(_ headers: [(name: String, value: String, secret: Bool)]) -> ByteBuffer {
        var block = ByteBuffer()
        for header in headers {
            block.writeInteger(UInt8(header.secret ? 0x10 : 0x00))
            for text in [header.name, header.value] {
                writeHPACKInteger(text.utf8.count, prefixBits: 7, to: &block)
                block.writeString(text)
            }
        }
        return block
    }

    static func writeHPACKInteger(_ value: Int, prefixBits: Int, to buffer: inout ByteBuffer) {
        let limit = (1 << prefixBits) - 1
        guard value >= limit else {
            buffer.writeInteger(UInt8(value))
            return
        }
        buffer.writeInteger(UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            buffer.writeInteger(UInt8(rest & 0x7F | 0x80))
            rest >>= 7
        }
        buffer.writeInteger(UInt8(rest))
    }
}
