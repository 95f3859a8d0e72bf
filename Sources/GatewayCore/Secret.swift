/// A secret string (client secret, admin token, key material) whose every textual rendering is redacted.
///
/// `description`, `debugDescription`, string interpolation, `dump` and mirrors all print `<redacted>`; the value is
/// reachable only through ``withUnredactedValue(_:)`` or ``unredacted``, so a reviewer can find every use by name.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let value: String

    public init(_ value: String) { self.value = value }

    /// The plain value. Call only where the secret leaves the process on purpose (sealing, a token request).
    public var unredacted: String { value }

    public func withUnredactedValue<R>(_ body: (String) throws -> R) rethrows -> R { try body(value) }

    public var isEmpty: Bool { value.isEmpty }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// Compares in time that depends only on the lengths, never on where the first difference is.
    public func constantTimeEquals(_ other: String) -> Bool {
        let a = Array(value.utf8)
        let b = Array(other.utf8)
        var diff: UInt8 = a.count == b.count ? 0 : 1
        let n = max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            diff |= x ^ y
        }
        return diff == 0
    }
}
