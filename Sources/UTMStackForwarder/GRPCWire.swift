import NIOCore

/// The bytes of UTMStack's gRPC messages, written and read by hand (docs/utmstack-stream.md). Pure.
///
/// A gRPC message on the wire is a 5-byte prefix (a compression flag, then the length as a big-endian `UInt32`)
/// followed by the protobuf encoding. Every field of `plugins.Log`, `plugins.Message` and `plugins.Ack` is a proto3
/// `string`: a tag byte (`number << 3 | 2`), the length as a varint, the UTF-8 bytes; empty strings are omitted.
/// Fields are written in field-number order, which is what swift-protobuf writes too (a unit test holds both
/// encodings equal).
enum GRPCWire {
    /// The largest acknowledgement accepted from the engine; an `Ack` is a few dozen bytes.
    static let maxInboundMessageBytes = 64 * 1024

    /// Appends `log` as one length-prefixed `plugins.Log` message.
    static func appendLog(_ log: OutboundLog, to buffer: inout ByteBuffer) {
        let length =
            fieldSize(log.id) + fieldSize(log.dataType) + fieldSize(log.dataSource) + fieldSize(log.timestamp)
            + fieldSize(log.tenantID) + fieldSize(log.raw)
        buffer.reserveCapacity(minimumWritableBytes: 5 + length)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(length))
        appendField(1, log.id, to: &buffer)
        appendField(2, log.dataType, to: &buffer)
        appendField(3, log.dataSource, to: &buffer)
        appendField(4, log.timestamp, to: &buffer)
        appendField(5, log.tenantID, to: &buffer)
        appendField(6, log.raw, to: &buffer)
    }

    /// Appends one length-prefixed message whose fields are the given strings, numbered from 1 (`plugins.Message`:
    /// id, timestamp, topic, message).
    static func appendMessage(_ fields: [String], to buffer: inout ByteBuffer) {
        let length = fields.reduce(0) { $0 + fieldSize($1) }
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(length))
        for (index, value) in fields.enumerated() { appendField(UInt8(index + 1), value, to: &buffer) }
    }

    private static func fieldSize(_ value: String) -> Int {
        let count = value.utf8.count
        return count == 0 ? 0 : 1 + varintSize(count) + count
    }

    private static func varintSize(_ value: Int) -> Int {
        var size = 1
        var rest = value >> 7
        while rest > 0 {
            size += 1
            rest >>= 7
        }
        return size
    }

    private static func appendField(_ number: UInt8, _ value: String, to buffer: inout ByteBuffer) {
        let count = value.utf8.count
        guard count > 0 else { return }
        buffer.writeInteger(number << 3 | 2)
        var rest = UInt64(count)
        while rest >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        buffer.writeInteger(UInt8(rest))
        buffer.writeString(value)
    }

    /// The fields of one length-prefixed `plugins.Log` message (a dead letter's, for its record id); nil when the
    /// bytes are not one.
    static func logFields(_ message: [UInt8]) -> (id: String?, raw: String?)? {
        guard message.count >= 5, message[0] == 0 else { return nil }
        var bytes = ByteBuffer(bytes: message.dropFirst(5))
        var id: String?
        var raw: String?
        while bytes.readableBytes > 0 {
            guard let tag = try? readVarint(&bytes), tag & 7 == 2, let length = try? readVarint(&bytes),
                length <= UInt64(bytes.readableBytes), let value = bytes.readSlice(length: Int(length))
            else { return nil }
            if tag >> 3 == 1 { id = String(buffer: value) }
            if tag >> 3 == 6 { raw = String(buffer: value) }
        }
        return (id, raw)
    }

    /// Field 1 of a protobuf message (`plugins.Ack.lastId`), or "" when absent; other fields are skipped.
    static func lastID(ofAck message: ByteBuffer) throws(GRPCWireError) -> String {
        var bytes = message
        var lastID = ""
        while bytes.readableBytes > 0 {
            let tag = try readVarint(&bytes)
            switch tag & 7 {
            case 0: _ = try readVarint(&bytes)
            case 1: guard bytes.readSlice(length: 8) != nil else { throw .truncated }
            case 5: guard bytes.readSlice(length: 4) != nil else { throw .truncated }
            case 2:
                let length = try readVarint(&bytes)
                guard length <= UInt64(bytes.readableBytes), let value = bytes.readSlice(length: Int(length))
                else { throw .truncated }
                if tag >> 3 == 1 { lastID = String(buffer: value) }
            default: throw .malformed
            }
        }
        return lastID
    }

    private static func readVarint(_ bytes: inout ByteBuffer) throws(GRPCWireError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = bytes.readInteger(as: UInt8.self) {
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            guard shift < 64 else { throw .malformed }
        }
        throw .truncated
    }
}

enum GRPCWireError: Error, Equatable, CustomStringConvertible {
    case truncated, malformed, compressed, tooLarge(Int)

    var description: String {
        switch self {
        case .truncated: "a truncated protobuf message from the engine"
        case .malformed: "a malformed protobuf message from the engine"
        case .compressed: "a compressed gRPC message from the engine, which was not asked to compress"
        case .tooLarge(let bytes): "a gRPC message of \(bytes) bytes from the engine, over the limit"
        }
    }
}

/// Splits the DATA frames of a response into gRPC messages, whatever the frame boundaries.
struct GRPCMessageReader {
    private var pending = ByteBuffer()

    /// Adds the payload of one DATA frame.
    mutating func append(_ bytes: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            var bytes = bytes
            pending.writeBuffer(&bytes)
        }
    }

    /// The next complete message, or nil until more bytes arrive.
    mutating func next() throws(GRPCWireError) -> ByteBuffer? {
        guard let flag = pending.getInteger(at: pending.readerIndex, as: UInt8.self),
            let length = pending.getInteger(at: pending.readerIndex + 1, as: UInt32.self)
        else { return nil }
        guard flag == 0 else { throw .compressed }
        guard length <= GRPCWire.maxInboundMessageBytes else { throw .tooLarge(Int(length)) }
        guard pending.readableBytes >= 5 + Int(length) else { return nil }
        pending.moveReaderIndex(forwardBy: 5)
        return pending.readSlice(length: Int(length))
    }

    /// Whether a message was started but not finished (the stream must not end here).
    var isMidMessage: Bool { pending.readableBytes > 0 }
}
