import NIOCore
import NIOEmbedded
import NIOHPACK
import Testing

@testable import ActivityAPI
@testable import UTMStackForwarder

/// Random, truncated and mutated input for the parsers that read what peers send: the blob parser (Microsoft) and
/// the HTTP/2 frame and gRPC message parsers (UTMStack). Each input must end in a result or an error: never a crash, a
/// hang or a stack overflow. Seeded, so a failure reproduces.
@Suite struct FuzzTests {
    /// SplitMix64: small, seeded, good enough to scatter bytes.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let blob = Array(
        #"[{"CreationTime":"2026-11-01T10:00:00","Id":"a1","Operation":"UserLoggedIn","Nested":{"Id":"x","List":[1,2.5e3,true,null,"s\"q"]},"Big":12345678901234567890},{"Id":"b2","CreationTime":"2026-11-01T10:00:01","Escaped":"\u00e9\\\n"}]"#.utf8)

    @Test func theBlobParserEndsEveryTruncatedBlobWithAnError() throws {
        #expect(try BlobParser.records(Self.blob).map(\.id) == ["a1", "b2"])
        for length in 0..<Self.blob.count {
            #expect(throws: BlobFormatError.self, "a blob cut at byte \(length)") { try BlobParser.records(Array(Self.blob.prefix(length))) }
        }
    }

    @Test func theBlobParserSurvivesRandomAndMutatedInput() {
        var random = Random(state: 20_261_202)
        let alphabet = Array(#"[]{}",:\ "0123456789.eE+-truefalsn"#.utf8) + [0, 0xFF, 0xC3, 0xA9, 0x0A]
        for round in 0..<3000 {
            var input: [UInt8]
            switch round % 3 {
            case 0: input = (0..<Int.random(in: 0...300, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1: input = (0..<Int.random(in: 0...300, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            default:
                input = Self.blob
                for _ in 0..<Int.random(in: 1...6, using: &random) {
                    input[Int.random(in: 0..<input.count, using: &random)] = alphabet.randomElement(using: &random)!
                }
            }
            // A result or a BlobFormatError: anything else (a crash) fails the run.
            do {
                for record in try BlobParser.records(input) { #expect(record.raw.utf8.count <= input.count) }
            } catch {
                #expect(error is BlobFormatError)
            }
        }
        let deep = Array(("[{\"Id\":" + String(repeating: "[", count: 1_000_000)).utf8)
        #expect(throws: BlobFormatError.self) { try BlobParser.records(deep) }
    }

    /// What a server sends on a healthy call: SETTINGS, response headers, acknowledgements, trailers.
    static func serverBytes() throws -> [UInt8] {
        var out = ByteBuffer()
        func frame(_ type: GRPCCallHandler.FrameType, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) {
            GRPCCallHandler.writeFrameHeader(length: payload.count, type: type, flags: flags, stream: stream, to: &out)
            out.writeBytes(payload)
        }
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        func headers(_ fields: [(String, String)]) throws -> [UInt8] {
            var block = ByteBuffer()
            try encoder.encode(headers: HPACKHeaders(fields), to: &block)
            return Array(block.readableBytesView)
        }
        frame(.settings, 0, 0, [0, 4, 0, 1, 0, 0])
        frame(.headers, 0x4, 1, try headers([(":status", "200"), ("content-type", "application/grpc")]))
        var acks = ByteBuffer()
        for id in ["one", "two", "three"] { GRPCWire.appendMessage([id], to: &acks) }
        frame(.data, 0, 1, Array(acks.readableBytesView.prefix(7)))
        frame(.data, 0, 1, Array(acks.readableBytesView.dropFirst(7)))
        frame(.ping, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
        frame(.headers, 0x5, 1, try headers([("grpc-status", "0")]))
        return Array(out.readableBytesView)
    }

    /// Feeds `bytes` to a fresh call in pieces, then closes the connection; the call must end, with or without an
    /// error, and report what it read before.
    static func feed(_ bytes: [UInt8], pieces: [Int]) async throws -> (ids: [String], failed: Bool) {
        let (events, continuation) = AsyncThrowingStream.makeStream(of: CallEvent.self)
        let headers = ForwarderConfiguration.Endpoint.engineSocket(path: "/x").requestHeaders(.input)
        let channel = EmbeddedChannel(
            handler: GRPCCallHandler(headerBlock: GRPCCallHandler.encodeHeaderBlock(headers), continuation: continuation))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var offset = 0
        for piece in pieces where offset < bytes.count && channel.isActive {
            let end = min(bytes.count, offset + piece)
            try? channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        _ = try? channel.close().wait()
        var ids: [String] = []
        do {
            for try await event in events {
                if case .acknowledged(let batch) = event { ids += batch }
            }
            return (ids, false)
        } catch {
            return (ids, true)
        }
    }

    @Test func theFrameParserEndsEveryTruncatedCallWithAnErrorAndKeepsWhatItRead() async throws {
        let bytes = try Self.serverBytes()
        let whole = try await Self.feed(bytes, pieces: [bytes.count])
        #expect(whole.ids == ["one", "two", "three"] && !whole.failed)
        for length in 0..<bytes.count {
            let cut = try await Self.feed(Array(bytes.prefix(length)), pieces: [length])
            #expect(cut.failed, "a call cut at byte \(length) ends with an error")
            #expect(["one", "two", "three"].starts(with: cut.ids))
        }
    }

    @Test func theFrameParserSurvivesRandomAndMutatedFrames() async throws {
        var random = Random(state: 9113)
        let valid = try Self.serverBytes()
        for round in 0..<1500 {
            var input: [UInt8]
            if round % 2 == 0 {
                // A valid preface, then noise: random frame headers with random payloads.
                input = Array(valid.prefix(15))
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    let length = Int.random(in: 0...40, using: &random)
                    input += [0, 0, UInt8(length), UInt8.random(in: 0...12, using: &random), UInt8.random(in: 0...255, using: &random)]
                    input += [0, 0, 0, UInt8.random(in: 0...3, using: &random)]
                    input += (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
            } else {
                input = valid
                for _ in 0..<Int.random(in: 1...5, using: &random) {
                    input[Int.random(in: 0..<input.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            let pieces = (0..<8).map { _ in Int.random(in: 1...64, using: &random) } + [input.count]
            _ = try await Self.feed(input, pieces: pieces)
        }
    }

    @Test func theMessageParsersSurviveRandomBytes() {
        var random = Random(state: 4_194_304)
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? GRPCWire.lastID(ofAck: ByteBuffer(bytes: bytes))
            _ = GRPCWire.logFields(bytes)
            var reader = GRPCMessageReader()
            reader.append(ByteBuffer(bytes: bytes))
            while let message = try? reader.next() { _ = message }
        }
    }
}
