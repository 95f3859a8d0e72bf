/// What the generated decoder would get wrong in a JSON body, found before it runs: no field of this API takes
/// `null` (the decoder reads it as absent, so a PATCH with `"dataSource": null` would succeed changing nothing), and
/// an object must not name a key twice (the decoder keeps one of the two values, while a check that reads the body
/// on its own might keep the other). Keys are compared after unescaping, so `"a"` and `"\u0061"` are the same key.
///
/// A pure scanner over the bytes: it reports the first problem with its path (`a.b[2]`). A body it cannot read as
/// one UTF-8 JSON value is `malformed`: what it did not check never reaches the decoder (which accepts a byte-order
/// mark or UTF-16, and would read past this check). Nesting deeper than 64 is malformed too: no body of this API
/// nests more than a few levels, and the scanner's stack stays bounded.
enum JSONBodyCheck {
    enum Problem: Equatable {
        case null(path: String)
        case duplicateKey(path: String)
        case malformed
    }

    static func firstProblem(in bytes: some Collection<UInt8>) -> Problem? {
        var scanner = Scanner(bytes: Array(bytes))
        do {
            try scanner.value(at: "")
            scanner.skipWhitespace()
            return scanner.index == scanner.bytes.count ? nil : .malformed
        } catch let stop as Stop {
            if case .problem(let problem) = stop { return problem }
            return .malformed
        } catch {
            return .malformed
        }
    }

    private enum Stop: Error {
        case problem(Problem)
        case malformed
    }

    /// Nesting deeper than this is malformed, so a hostile body cannot exhaust the stack.
    private static let maxDepth = 64

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0
        var depth = 0

        mutating func value(at path: String) throws {
            skipWhitespace()
            guard index < bytes.count else { throw Stop.malformed }
            switch bytes[index] {
            case UInt8(ascii: "{"): try object(at: path)
            case UInt8(ascii: "["): try array(at: path)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "n"):
                try literal("null")
                throw Stop.problem(.null(path: path))
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            default: try number()
            }
        }

        mutating func object(at path: String) throws {
            try enter()
            index += 1
            var keys = Set<String>()
            skipWhitespace()
            if peek == UInt8(ascii: "}") { return leave() }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw Stop.malformed }
                let key = try string()
                let keyPath = path.isEmpty ? key : "\(path).\(key)"
                guard keys.insert(key).inserted else { throw Stop.problem(.duplicateKey(path: keyPath)) }
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { throw Stop.malformed }
                index += 1
                try value(at: keyPath)
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): return leave()
                default: throw Stop.malformed
                }
            }
        }

        mutating func array(at path: String) throws {
            try enter()
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") { return leave() }
            var position = 0
            while true {
                try value(at: "\(path)[\(position)]")
                position += 1
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"): return leave()
                default: throw Stop.malformed
                }
            }
        }

        /// A string token, unescaped.
        mutating func string() throws -> String {
            index += 1
            var scalars = String.UnicodeScalarView()
            var raw: [UInt8] = []
            func flushRaw() {
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                raw.removeAll(keepingCapacity: true)
            }
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    flushRaw()
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    flushRaw()
                    guard index < bytes.count else { throw Stop.malformed }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(Unicode.Scalar(escape))
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if (0xD800..<0xDC00).contains(code), bytes.count >= index + 6, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        {
                            let saved = index
                            index += 2
                            let low = try hex4()
                            if (0xDC00..<0xE000).contains(low) {
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                index = saved
                            }
                        }
                        scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                    default: throw Stop.malformed
                    }
                default:
                    raw.append(byte)
                }
            }
            throw Stop.malformed
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count else { throw Stop.malformed }
            var code: UInt32 = 0
            for byte in bytes[index..<index + 4] {
                guard let digit = hexValue(byte) else { throw Stop.malformed }
                code = code << 4 | digit
            }
            index += 4
            return code
        }

        func hexValue(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }

        mutating func literal(_ word: String) throws {
            let expected = Array(word.utf8)
            guard index + expected.count <= bytes.count, bytes[index..<index + expected.count].elementsEqual(expected) else {
                throw Stop.malformed
            }
            index += expected.count
        }

        mutating func number() throws {
            let start = index
            while index < bytes.count, Self.numberBytes.contains(bytes[index]) { index += 1 }
            guard index > start else { throw Stop.malformed }
        }

        static let numberBytes = Set("0123456789+-.eE".utf8)

        mutating func enter() throws {
            depth += 1
            guard depth <= JSONBodyCheck.maxDepth else { throw Stop.malformed }
        }

        /// Past the closing bracket of an object or array.
        mutating func leave() {
            index += 1
            depth -= 1
        }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while index < bytes.count,
                bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\n") || bytes[index] == UInt8(ascii: "\r")
                    || bytes[index] == UInt8(ascii: "\t")
            {
                index += 1
            }
        }
    }
}
