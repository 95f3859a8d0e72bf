import NIOCore
import SwiftProtobuf
import Testing
import UTMStackProtocol

@testable import UTMStackForwarder

/// The hand-written encoding must be what swift-protobuf (the generated code of plugins.proto) writes and reads.
@Suite struct GRPCWireTests {
    static let logs = [
        OutboundLog(
            id: "5f0c3b7e-8d2a-5b1c-9e4f-0a1b2c3d4e5f", dataType: "o365", dataSource: "Contoso",
            timestamp: "2026-11-25T10:00:00.123Z", tenantID: "ce66672c-e36d-4761-a8c8-90058fee1a24",
            raw: #"{"CreationTime":"2026-11-25T10:00:00.123","Id":"x","Operation":"UserLoggedIn"}"#),
        // Empty fields are omitted, a long raw needs a multi-byte length, non-ASCII text counts in UTF-8 bytes.
        OutboundLog(id: "a", dataType: "", dataSource: "Société Générale – 東京", timestamp: "", tenantID: "",
                    raw: String(repeating: "é", count: 70_000)),
    ]

    @Test(arguments: logs)
    func logsAreEncodedExactlyAsSwiftProtobufDoes(_ log: OutboundLog) throws {
        var buffer = ByteBuffer()
        GRPCWire.appendLog(log, to: &buffer)
        var proto = Plugins_Log()
        proto.id = log.id
        proto.dataType = log.dataType
        proto.dataSource = log.dataSource
        proto.timestamp = log.timestamp
        proto.tenantID = log.tenantID
        proto.raw = log.raw
        let expected: [UInt8] = try proto.serializedBytes()
        #expect(buffer.readInteger(as: UInt8.self) == 0)
        #expect(buffer.readInteger(as: UInt32.self) == UInt32(expected.count))
        #expect(buffer.readBytes(length: buffer.readableBytes) == expected)
    }

    @Test func notificationsAreEncodedExactlyAsSwiftProtobufDoes() throws {
        var message = Plugins_Message()
        message.id = "0d7c1a52-5a55-4b0e-9d55-3b1f3f0c1a11"
        message.timestamp = "2026-11-25T10:00:00Z"
        message.topic = "integration_failure"
        message.message = #"{"code":"auth_failed"}"#
        var buffer = ByteBuffer()
        GRPCWire.appendMessage([message.id, message.timestamp, message.topic, message.message], to: &buffer)
        buffer.moveReaderIndex(forwardBy: 5)
        #expect(try Plugins_Message(serializedBytes: buffer.readBytes(length: buffer.readableBytes)!) == message)
    }

    @Test func acknowledgementsAreReadAcrossAnyFrameBoundaries() throws {
        // Acks as swift-protobuf writes them, one with an unknown varint field (a newer engine) and one empty.
        var stream = ByteBuffer()
        var expected: [String] = []
        for index in 0..<50 {
            var ack = Plugins_Ack()
            ack.lastID = index == 7 ? "" : "id-\(index)-\(String(repeating: "z", count: index))"
            var bytes: [UInt8] = try ack.serializedBytes()
            if index == 3 { bytes = [0x10, 0x96, 0x01] + bytes }  // field 2, varint 150
            stream.writeInteger(UInt8(0))
            stream.writeInteger(UInt32(bytes.count))
            stream.writeBytes(bytes)
            expected.append(ack.lastID)
        }
        for chunk in [1, 2, 5, 7, 64, stream.readableBytes] {
            var reader = GRPCMessageReader()
            var read: [String] = []
            var rest = stream
            while rest.readableBytes > 0 {
                reader.append(rest.readSlice(length: min(chunk, rest.readableBytes))!)
                while let message = try reader.next() { read.append(try GRPCWire.lastID(ofAck: message)) }
            }
            #expect(read == expected, "frames of \(chunk) bytes")
            #expect(!reader.isMidMessage)
        }
    }

    @Test func brokenInputIsRejectedNotMisread() throws {
        let compressed = ByteBuffer(bytes: [1, 0, 0, 0, 2, 0x0A, 0x00])
        var reader = GRPCMessageReader()
        reader.append(compressed)
        #expect(throws: GRPCWireError.compressed) { try reader.next() }

        var huge = GRPCMessageReader()
        huge.append(ByteBuffer(bytes: [0, 0x7F, 0, 0, 0]))
        #expect(throws: GRPCWireError.tooLarge(0x7F00_0000)) { try huge.next() }

        var partial = GRPCMessageReader()
        partial.append(ByteBuffer(bytes: [0, 0, 0, 0, 9, 0x0A]))
        #expect(try partial.next() == nil)
        #expect(partial.isMidMessage)

        // A length that runs past the message, and a group wire type (not valid in proto3).
        #expect(throws: GRPCWireError.truncated) { try GRPCWire.lastID(ofAck: ByteBuffer(bytes: [0x0A, 0x05, 0x61])) }
        #expect(throws: GRPCWireError.malformed) { try GRPCWire.lastID(ofAck: ByteBuffer(bytes: [0x0B])) }
    }
}
