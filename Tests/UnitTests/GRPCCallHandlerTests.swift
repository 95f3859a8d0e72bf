import NIOCore
import NIOEmbedded
import NIOHPACK
import Testing

@testable import UTMStackForwarder

/// The hand-framed HTTP/2 client of one gRPC call, driven frame by frame on an embedded channel (no I/O). Server
/// frames are built here; header blocks are encoded by NIOHPACK (Huffman, dynamic table) as a real server would.
@Suite struct GRPCCallHandlerTests {
    struct Frame: Equatable {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]
    }

    final class Call {
        let channel: EmbeddedChannel
        let events: AsyncThrowingStream<CallEvent, any Error>
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        /// Everything the client wrote, preface removed, not yet looked at.
        var written = ByteBuffer()

        /// - Parameter serverPreface: whether the server's SETTINGS arrive first, as every server sends them.
        init(
            headers: [(name: String, value: String, secret: Bool)] = ForwarderConfiguration.Endpoint.engineSocket(path: "/x").requestHeaders(.input),
            serverPreface: Bool = true
        ) throws {
            let (stream, continuation) = AsyncThrowingStream.makeStream(of: CallEvent.self)
            events = stream
            channel = EmbeddedChannel(
                handler: GRPCCallHandler(headerBlock: GRPCCallHandler.encodeHeaderBlock(headers), continuation: continuation))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            collect()
            #expect(written.readString(length: GRPCCallHandler.preface.utf8.count) == GRPCCallHandler.preface)
            if serverPreface { try receive(4, stream: 0, []) }
        }

        func collect() {
            while var buffer = try? channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&buffer) }
        }

        /// The frames the client wrote since the last call.
        func frames() -> [Frame] {
            collect()
            var frames: [Frame] = []
            while written.readableBytes >= 9 {
                let length = Int(written.readInteger(as: UInt8.self)!) << 16 | Int(written.readInteger(as: UInt16.self)!)
                let type = written.readInteger(as: UInt8.self)!
                let flags = written.readInteger(as: UInt8.self)!
                let stream = written.readInteger(as: UInt32.self)!
                frames.append(Frame(type: type, flags: flags, stream: stream, payload: written.readBytes(length: length)!))
            }
            return frames
        }

        func receive(_ type: UInt8, flags: UInt8 = 0, stream: UInt32 = 1, _ payload: [UInt8]) throws {
            var buffer = ByteBuffer()
            GRPCCallHandler.writeFrameHeader(length: payload.count, type: .init(rawValue: type) ?? .priority, flags: flags, stream: stream, to: &buffer)
            buffer.setInteger(type, at: 3)  // also frame types the handler does not know
            buffer.writeBytes(payload)
            try channel.writeInbound(buffer)
        }

        func headerBlock(_ headers: [(String, String)]) throws -> [UInt8] {
            var buffer = ByteBuffer()
            try encoder.encode(headers: HPACKHeaders(headers), to: &buffer)
            return buffer.readBytes(length: buffer.readableBytes)!
        }

        func ackMessages(_ ids: [String]) -> [UInt8] {
            var buffer = ByteBuffer()
            for id in ids { GRPCWire.appendMessage([id], to: &buffer) }
            return buffer.readBytes(length: buffer.readableBytes)!
        }

        func all() async throws -> [String] {
            var ids: [String] = []
            for try await event in events {
                if case .acknowledged(let batch) = event { ids += batch }
            }
            return ids
        }
    }

    @Test func theCallStartsWithSettingsAWindowAndTheRequestHeaders() throws {
        let key = "federation-key-0123456789"
        let endpoint = ForwarderConfiguration.Endpoint.network(.init(host: "10.0.0.5", serverName: "utm.example", connectionKey: .init(key)))
        let call = try Call(headers: endpoint.requestHeaders(.processLog))
        let frames = call.frames()
        #expect(frames.map(\.type) == [4, 8, 1, 4])
        #expect(frames[3].flags == 1, "the server's SETTINGS acknowledged")
        #expect(frames[0].payload == [0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 4, 0, 0x10, 0, 0], "push off, no streams, 1 MiB")
        #expect(frames[1].stream == 0 && frames[1].payload == [0, 0x0F, 0, 1], "connection window to 1 MiB")
        #expect(frames[2].stream == 1 && frames[2].flags == 0x4)
        var block = ByteBuffer(bytes: frames[2].payload)
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        let headers = try decoder.decodeHeaders(from: &block)
        #expect(headers.first(name: ":path") == "/plugins.Integration/ProcessLog")
        #expect(headers.first(name: ":authority") == "utm.example:50051" && headers.first(name: ":scheme") == "https")
        #expect(headers.first(name: "content-type") == "application/grpc" && headers.first(name: "te") == "trailers")
        #expect(headers.first(name: "connection-key") == key)
        // The key is a never-indexed literal (0x10), so no HPACK table keeps it.
        let keyField = [0x10, UInt8("connection-key".utf8.count)] + Array("connection-key".utf8)
        #expect(frames[2].payload.indices.contains { Array(frames[2].payload.dropFirst($0).prefix(keyField.count)) == keyField })
    }

    @Test func dataWaitsForThePeersWindowsAndHonoursItsFrameSize() throws {
        let call = try Call()
        _ = call.frames()
        // The server allows 10 bytes per stream, then answers our SETTINGS.
        try call.receive(4, stream: 0, [0, 4, 0, 0, 0, 10])
        #expect(call.frames() == [Frame(type: 4, flags: 1, stream: 0, payload: [])], "SETTINGS acknowledged")
        let written = call.channel.writeAndFlush(CallWrite.messages([ByteBuffer(bytes: Array(0..<25))], endStream: true))
        var frames = call.frames()
        #expect(frames == [Frame(type: 0, flags: 0, stream: 1, payload: Array(0..<10))])
        try call.receive(8, stream: 1, [0, 0, 0, 100])
        frames = call.frames()
        #expect(frames == [Frame(type: 0, flags: 1, stream: 1, payload: Array(10..<25))], "the rest, ending the stream")
        try written.wait()

        // A bigger window and the smallest maximum frame size: 40,000 bytes go out in frames of 16,384.
        let second = try Call()
        _ = second.frames()
        try second.receive(8, stream: 0, [0, 0x01, 0, 0])  // connection window +65,536
        try second.receive(8, stream: 1, [0, 0x01, 0, 0])
        try second.channel.writeAndFlush(CallWrite.messages([ByteBuffer(repeating: 7, count: 40_000)], endStream: false)).wait()
        #expect(second.frames().map(\.payload.count) == [16_384, 16_384, 7_232])
    }

    @Test func pingsAreAnsweredAndUnknownFramesIgnored() throws {
        let call = try Call()
        _ = call.frames()
        try call.receive(6, stream: 0, [1, 2, 3, 4, 5, 6, 7, 8])
        try call.receive(0xFA, stream: 0, [9, 9, 9])
        try call.receive(6, flags: 1, stream: 0, [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(call.frames() == [Frame(type: 6, flags: 1, stream: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])])
    }

    @Test func acknowledgementsArriveAcrossContinuationPaddingAndSplitMessages() async throws {
        let call = try Call()
        let headers = try call.headerBlock([(":status", "200"), ("content-type", "application/grpc+proto"), ("server", "engine")])
        try call.receive(1, flags: 0, Array(headers.prefix(3)))
        try call.receive(9, flags: 0x4, Array(headers.dropFirst(3)))
        let acks = call.ackMessages(["a", "b", "c"])
        try call.receive(0, flags: 0x8, [4] + Array(acks.prefix(4)) + [0, 0, 0, 0])  // padded by 4
        try call.receive(0, Array(acks.dropFirst(4)))
        try call.receive(1, flags: 0x5, try call.headerBlock([("grpc-status", "0")]))
        #expect(try await call.all() == ["a", "b", "c"])
    }

    @Test func receivedDataReopensTheWindows() throws {
        let call = try Call()
        _ = call.frames()
        try call.receive(1, flags: 0x4, try call.headerBlock([(":status", "200"), ("content-type", "application/grpc")]))
        let ack = call.ackMessages([String(repeating: "i", count: 16_000)])
        for _ in 0..<32 { try call.receive(0, ack) }  // 32 × 16,008 bytes: just under half of 1 MiB
        #expect(call.frames().isEmpty)
        try call.receive(0, ack)
        let updates = call.frames()
        #expect(updates.map(\.type) == [8, 8] && updates.map(\.stream) == [0, 1])
        #expect(updates.allSatisfy { $0.payload == [0, 0x08, 0x0F, 0x88] }, "33 × 16,008 bytes returned")
    }

    @Test(arguments: [
        ([("grpc-status", "14"), ("grpc-message", "engine%20busy")], "gRPC status UNAVAILABLE (14): engine busy"),
        ([("grpc-status", "0")], nil),
    ] as [([(String, String)], String?)])
    func trailersEndTheCall(_ trailers: [(String, String)], _ expected: String?) async throws {
        let call = try Call()
        try call.receive(1, flags: 0x4, try call.headerBlock([(":status", "200"), ("content-type", "application/grpc")]))
        try call.receive(0, call.ackMessages(["x"]))
        try call.receive(1, flags: 0x5, try call.headerBlock(trailers))
        var ids: [String] = []
        do {
            for try await event in call.events {
                if case .acknowledged(let batch) = event { ids += batch }
            }
            #expect(expected == nil)
        } catch {
            #expect(expected.map { "\(error)".contains($0) } == true, "\(error)")
        }
        #expect(ids == ["x"], "what was acknowledged before the end is handed over")
    }

    @Test(arguments: [
        (UInt8(3), UInt32(1), [0, 0, 0, 8] as [UInt8], "reset the call (CANCEL)"),
        (7, 0, [0, 0, 0, 0, 0, 0, 0, 0x0B], "refused the call (GOAWAY, ENHANCE_YOUR_CALM)"),
        (5, 1, [0, 0, 0, 2], "PUSH_PROMISE"),
        (0, 1, [0, 0, 0, 0, 1, 0x0A], "DATA before the response headers"),
        (9, 1, [], "CONTINUATION frame without HEADERS"),
    ])
    func brokenOrRefusedCallsEndWithAnError(_ type: UInt8, _ stream: UInt32, _ payload: [UInt8], _ expected: String) async throws {
        let call = try Call()
        try call.receive(type, stream: stream, payload)
        let error = await #expect(throws: (any Error).self) { try await call.all() }
        #expect(error.map { "\($0)".contains(expected) } == true, "\(String(describing: error))")
        // Writes after the end fail rather than wait.
        #expect(throws: (any Error).self) { try call.channel.writeAndFlush(CallWrite.messages([ByteBuffer(bytes: [1])], endStream: false)).wait() }
    }

    /// A GOAWAY that covers the call is reported (the forwarder then half-closes and reconnects); the call may
    /// still finish: acknowledgements and trailers after it are taken.
    @Test func aGoAwayThatCoversTheCallIsReportedAndLetsItFinish() async throws {
        let call = try Call()
        try call.receive(1, flags: 0x4, try call.headerBlock([(":status", "200"), ("content-type", "application/grpc")]))
        try call.receive(0, call.ackMessages(["before"]))
        try call.receive(7, stream: 0, [0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])  // grpc-go's first, graceful GOAWAY
        try call.receive(7, stream: 0, [0, 0, 0, 1, 0, 0, 0, 0])  // and its second, naming the last stream
        try call.receive(0, call.ackMessages(["last"]))
        try call.receive(1, flags: 0x5, try call.headerBlock([("grpc-status", "0")]))
        var events: [String] = []
        for try await event in call.events {
            switch event {
            case .acknowledged(let ids): events += ids
            case .goingAway: events.append("GOAWAY")
            }
        }
        #expect(events == ["before", "GOAWAY", "last"], "reported once, in order")
    }

    @Test func aPingIsSentOnRequestAndAnUnansweredOneEndsTheCall() async throws {
        let call = try Call()
        _ = call.frames()
        try call.channel.writeAndFlush(CallWrite.ping(timeout: .seconds(10))).wait()
        let ping = try #require(call.frames().first)
        #expect(ping.type == 6 && ping.flags == 0 && ping.stream == 0 && ping.payload.count == 8)
        try call.channel.writeAndFlush(CallWrite.ping(timeout: .seconds(10))).wait()
        #expect(call.frames().isEmpty, "one PING outstanding at a time")
        // Answered: the timeout no longer applies, and a later PING may go.
        try call.receive(6, flags: 1, stream: 0, ping.payload)
        call.channel.embeddedEventLoop.advanceTime(by: .seconds(11))
        try call.channel.writeAndFlush(CallWrite.ping(timeout: .seconds(10))).wait()
        let second = try #require(call.frames().first)
        #expect(second.type == 6 && second.payload != ping.payload)
        // Unanswered: the call ends with an error saying why, and a GOAWAY goes out.
        call.channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        let error = await #expect(throws: (any Error).self) { try await call.all() }
        #expect(error.map { "\($0)".contains("did not answer a PING") } == true, "\(String(describing: error))")
        #expect(call.frames().map(\.type) == [7])
    }

    @Test(arguments: [
        (UInt8(6), UInt32(0), [1, 2, 3] as [UInt8], "a PING frame of the wrong size", UInt32(6)),
        (6, 1, [1, 2, 3, 4, 5, 6, 7, 8], "PING on a stream", 1),
        (0, 0, [0, 0, 0, 0, 0], "DATA on stream 0", 1),
        (4, 0, [0, 4, 0x80, 0, 0, 0], "an initial window over 2^31-1", 1),
        (4, 0, [0, 5, 0, 0, 0, 1], "a maximum frame size of 1", 1),
        (8, 0, [0, 0, 0, 0], "a WINDOW_UPDATE of 0", 1),
    ])
    func connectionErrorsAreAnsweredWithAGoAway(_ type: UInt8, _ stream: UInt32, _ payload: [UInt8], _ expected: String, _ code: UInt32) async throws {
        let call = try Call()
        _ = call.frames()
        try call.receive(type, stream: stream, payload)
        let error = await #expect(throws: (any Error).self) { try await call.all() }
        #expect(error.map { "\($0)".contains(expected) } == true, "\(String(describing: error))")
        let goAway = try #require(call.frames().last)
        #expect(goAway.type == 7 && goAway.payload.suffix(4) == [UInt8(code >> 24), UInt8(code >> 16 & 0xFF), UInt8(code >> 8 & 0xFF), UInt8(code & 0xFF)])
    }

    /// A header block is bounded: an engine that sends CONTINUATION frames without end ends the call instead of
    /// growing the block.
    @Test(.timeLimit(.minutes(1))) func aHeaderBlockWithoutEndIsRefused() async throws {
        let call = try Call()
        try call.receive(1, flags: 0, [0x88])  // HEADERS without END_HEADERS
        for _ in 0..<8 { try? call.receive(9, flags: 0, Array(repeating: 0x88, count: 16_384)) }
        let error = await #expect(throws: (any Error).self) { try await call.all() }
        #expect(error.map { "\($0)".contains("header block over 65536 bytes") } == true)
    }

    @Test func aServerThatDoesNotStartWithSettingsIsRefused() async throws {
        let call = try Call(serverPreface: false)
        try call.receive(6, stream: 0, [1, 2, 3, 4, 5, 6, 7, 8])
        let error = await #expect(throws: (any Error).self) { try await call.all() }
        #expect(error.map { "\($0)".contains("server preface without SETTINGS") } == true)
    }

}
