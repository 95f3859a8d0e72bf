import Crypto
import Foundation
import GatewayCore

public struct BlobFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "content blob is not a JSON array of objects (\(reason) at byte \(offset))" }
}

/// Splits a content blob (a JSON array of audit records) into records without decoding and re-encoding them:
/// each record keeps its exact bytes (key order, large integers, escapes), plus its top-level `Id` and
/// `CreationTime`. One pass over the bytes.
public enum BlobParser {
    /// Deepest nesting accepted inside a record (audit records nest a few levels); deeper input is refused rather
    /// than recursed into, so no blob can exhaust the stack.
    public static let maxDepth = 64

    public static func records(_ bytes: [UInt8]) throws -> [AuditRecord] {
        var records: [AuditRecord] = []
        try bytes.withUnsafeBufferPointer { b in
            var i = skipSpace(b, 0)
            if i < b.count && b[i] == 0xEF && i + 2 < b.count && b[i + 1] == 0xBB && b[i + 2] == 0xBF { i = skipSpace(b, i + 3) }
            guard i < b.count, b[i] == UInt8(ascii: "[") else { throw BlobFormatError(offset: i, reason: "expected [") }
            i = skipSpace(b, i + 1)
            if i < b.count, b[i] == UInt8(ascii: "]") { return }
            while true {
                guard i < b.count, b[i] == UInt8(ascii: "{") else { throw BlobFormatError(offset: i, reason: "expected {") }
                let start = i
                var id: String?
                var creationTime: String?
                i = try scanObject(b, start, depth: 1) { key, valueStart, valueEnd in
                    if key == "Id" { id = stringValue(b, valueStart, valueEnd) }
                    if key == "CreationTime" { creationTime = stringValue(b, valueStart, valueEnd) }
                }
                let raw = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
                records.append(AuditRecord(id: id ?? fallbackID(raw), creationTime: creationTime ?? "", raw: raw))
                i = skipSpace(b, i)
                guard i < b.count else { throw BlobFormatError(offset: i, reason: "unterminated array") }
                if b[i] == UInt8(ascii: "]") { break }
                guard b[i] == UInt8(ascii: ",") else { throw BlobFormatError(offset: i, reason: "expected , or ]") }
                i = skipSpace(b, i + 1)
            }
        }
        return records
    }

    /// A record without an `Id` (never seen from Microsoft) gets a stable id from its bytes, so it is still
    /// de-duplicated.
    static func fallbackID(_ raw: String) -> String {
        "sha256:" + SHA256.hash(data: Array(raw.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Scans the object starting at `i` (a `{`), reporting each top-level member; returns the index after `}`.
    private static func scanObject(
        _ b: UnsafeBufferPointer<UInt8>, _ start: Int, depth: Int, member: (String, Int, Int) -> Void
    ) throws -> Int {
        var i = skipSpace(b, start + 1)
        if i < b.count, b[i] == UInt8(ascii: "}") { return i + 1 }
        while true {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw BlobFormatError(offset: i, reason: "expected a key") }
            let keyEnd = try skipString(b, i)
            let key = String(decoding: UnsafeBufferPointer(rebasing: b[(i + 1)..<(keyEnd - 1)]), as: UTF8.self)
            i = skipSpace(b, keyEnd)
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw BlobFormatError(offset: i, reason: "expected :") }
            let valueStart = skipSpace(b, i + 1)
            let valueEnd = try skipValue(b, valueStart, depth: depth)
            member(key, valueStart, valueEnd)
            i = skipSpace(b, valueEnd)
            guard i < b.count else { throw BlobFormatError(offset: i, reason: "unterminated object") }
            if b[i] == UInt8(ascii: "}") { return i + 1 }
            guard b[i] == UInt8(ascii: ",") else { throw BlobFormatError(offset: i, reason: "expected , or }") }
            i = skipSpace(b, i + 1)
        }
    }

    private static func skipValue(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, depth: Int) throws -> Int {
        guard i < b.count else { throw BlobFormatError(offset: i, reason: "missing value") }
        if depth >= maxDepth && (b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[")) {
            throw BlobFormatError(offset: i, reason: "nesting deeper than \(maxDepth)")
        }
        switch b[i] {
        case UInt8(ascii: "\""): return try skipString(b, i)
        case UInt8(ascii: "{"): return try scanObject(b, i, depth: depth + 1) { _, _, _ in }
        case UInt8(ascii: "["):
            var j = skipSpace(b, i + 1)
            if j < b.count, b[j] == UInt8(ascii: "]") { return j + 1 }
            while true {
                j = skipSpace(b, try skipValue(b, j, depth: depth + 1))
                guard j < b.count else { throw BlobFormatError(offset: j, reason: "unterminated array") }
                if b[j] == UInt8(ascii: "]") { return j + 1 }
                guard b[j] == UInt8(ascii: ",") else { throw BlobFormatError(offset: j, reason: "expected , or ]") }
                j = skipSpace(b, j + 1)
            }
        default:
            // number, true, false, null
            var j = i
            while j < b.count, !isDelimiter(b[j]) { j += 1 }
            guard j > i else { throw BlobFormatError(offset: i, reason: "unexpected character") }
            return j
        }
    }

    private static func skipString(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) throws -> Int {
        var j = i + 1
        while j < b.count {
            switch b[j] {
            case UInt8(ascii: "\\"): j += 2
            case UInt8(ascii: "\""): return j + 1
            default: j += 1
            }
        }
        throw BlobFormatError(offset: i, reason: "unterminated string")
    }

    /// The text of a JSON string value (nil when the value is not a string); escapes are decoded.
    private static func stringValue(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String? {
        guard end - start >= 2, b[start] == UInt8(ascii: "\"") else { return nil }
        let inner = UnsafeBufferPointer(rebasing: b[(start + 1)..<(end - 1)])
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        let literal = String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
        return try? JSONDecoder().decode(String.self, from: Data(literal.utf8))
    }

    private static func isDelimiter(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == 0x20 || c == 0x0A
            || c == 0x0D || c == 0x09
    }

    private static func skipSpace(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        var j = i
        while j < b.count, b[j] == 0x20 || b[j] == 0x0A || b[j] == 0x0D || b[j] == 0x09 { j += 1 }
        return j
    }
}
