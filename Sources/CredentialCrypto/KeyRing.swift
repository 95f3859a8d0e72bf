import Crypto
import Foundation
import GatewayCore

/// The data-encryption keys, from `O365GW_ENCRYPTION_KEYS`: comma-separated `keyId:base64(32 bytes)`.
/// The first key seals; every key opens. Key material never appears in a description or an error.
public struct KeyRing: Sendable, CustomStringConvertible {
    public let activeKeyID: String
    private let keys: [String: SymmetricKey]

    public init(activeKeyID: String, keys: [String: SymmetricKey]) {
        precondition(keys[activeKeyID] != nil, "the active key must be in the ring")
        self.activeKeyID = activeKeyID
        self.keys = keys
    }

    /// Parses the `O365GW_ENCRYPTION_KEYS` format. Errors name the position and key id, never the key.
    public init(parsing specification: Secret) throws {
        var keys: [String: SymmetricKey] = [:]
        var order: [String] = []
        let entries = specification.unredacted.split(separator: ",", omittingEmptySubsequences: true)
        guard !entries.isEmpty else {
            throw KeyRing.invalid("is empty; give at least one key as keyId:base64(32 random bytes), e.g. "
                + "k1:$(openssl rand -base64 32).")
        }
        for (index, rawEntry) in entries.enumerated() {
            let entry = rawEntry.trimmingCharacters(in: .whitespaces)
            guard let colon = entry.firstIndex(of: ":") else {
                throw KeyRing.invalid("entry \(index + 1) has no ':'; write keyId:base64key.")
            }
            let keyID = String(entry[..<colon])
            let encoded = String(entry[entry.index(after: colon)...])
            guard KeyRing.isValidKeyID(keyID) else {
                throw KeyRing.invalid("entry \(index + 1): the key id must be 1 to 32 characters of A-Z a-z 0-9 . _ -.")
            }
            guard keys[keyID] == nil else {
                throw KeyRing.invalid("key id \(keyID) appears twice.")
            }
            guard let bytes = Data(base64Encoded: encoded), bytes.count == 32 else {
                throw KeyRing.invalid("key \(keyID) is not base64 of exactly 32 bytes; make one with openssl rand -base64 32.")
            }
            keys[keyID] = SymmetricKey(data: bytes)
            order.append(keyID)
        }
        self.init(activeKeyID: order[0], keys: keys)
    }

    /// A ring with one fresh random key (for the demo and tests).
    public static func random(keyID: String = "k1") -> KeyRing {
        KeyRing(activeKeyID: keyID, keys: [keyID: SymmetricKey(size: .bits256)])
    }

    /// The `O365GW_ENCRYPTION_KEYS` text of this ring, active key first.
    public var specification: Secret {
        let ordered = [activeKeyID] + keyIDs.filter { $0 != activeKeyID }
        return Secret(ordered.map { id in
            "\(id):" + keys[id]!.withUnsafeBytes { Data($0).base64EncodedString() }
        }.joined(separator: ","))
    }

    public var keyIDs: [String] { keys.keys.sorted() }

    func key(_ id: String) -> SymmetricKey? { keys[id] }
    var activeKey: SymmetricKey { keys[activeKeyID]! }

    public var description: String { "KeyRing(active: \(activeKeyID), ids: \(keyIDs), <redacted>)" }

    static func isValidKeyID(_ id: String) -> Bool {
        (1...32).contains(id.count)
            && id.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "._-".unicodeScalars.contains($0) }
    }

    static func invalid(_ message: String) -> GatewayError {
        GatewayError(.invalidInput, code: "invalid_encryption_keys", "O365GW_ENCRYPTION_KEYS " + message)
    }
}
