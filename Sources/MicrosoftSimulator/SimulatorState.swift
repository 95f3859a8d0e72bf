import CredentialCrypto
import Crypto
import Foundation
import Synchronization
import X509
import _CryptoExtras
import SwiftASN1

/// The simulator's mutable state: issued tokens, subscriptions, per-tenant request counts, the fault counter.
final class SimulatorState: Sendable {
    /// `graph`: issued for the Graph audience (scope or resource on the Graph host), not for the Activity API.
    struct Token { var tenantIndex: Int; var roles: Bool; var graph: Bool; var expiresAt: Date }
    enum Subscription { case enabled, disabled }

    struct Counters {
        var tokens: [String: Token] = [:]
        var subscriptions: [String: Subscription] = [:]
        var buckets: [Int: (tokens: Double, at: Double)] = [:]
        var apiRequests = 0
        var starts = 0
        var throttled = 0
        var faults = 0
        /// Fetches so far of the blobs chosen to fail (`blobFailureFraction`), by content id.
        var failingFetches: [String: Int] = [:]
    }

    let configuration: SimulatorConfiguration
    let generator: ContentGenerator
    /// Tenant index by lower-case tenant id: every request looks its tenant up.
    private let tenantIndexes: [String: Int]
    private let counters = Mutex(Counters())

    init(configuration: SimulatorConfiguration, startedAt: Date) {
        self.configuration = configuration
        self.tenantIndexes = Dictionary(
            configuration.tenants.enumerated().map { ($1.tenantId.uuidString.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        self.generator = ContentGenerator(configuration: configuration, startedAt: startedAt)
        counters.withLock { c in
            for (index, tenant) in configuration.tenants.enumerated() {
                for type in tenant.disabledContentTypes { c.subscriptions["\(index)|\(type)"] = .disabled }
            }
        }
    }

    func tenantIndex(_ id: String) -> Int? {
        tenantIndexes[id.lowercased()]
    }

    func issueToken(tenant: Int, graph: Bool, now: Date) -> String {
        let token = "simtok-" + UUID().uuidString.lowercased()
        let roles = configuration.tenants[tenant].mode != .noConsent
        counters.withLock {
            $0.tokens[token] = Token(tenantIndex: tenant, roles: roles, graph: graph, expiresAt: now.addingTimeInterval(Double(configuration.tokenLifetimeSeconds)))
        }
        return token
    }

    func token(_ value: String) -> Token? { counters.withLock { $0.tokens[value] } }

    func subscription(_ tenant: Int, _ type: String) -> Subscription? {
        counters.withLock { $0.subscriptions["\(tenant)|\(type)"] }
    }

    /// Starts a subscription; false when it was already enabled (AF20024).
    func start(_ tenant: Int, _ type: String) -> Bool {
        counters.withLock {
            $0.starts += 1
            if $0.subscriptions["\(tenant)|\(type)"] == .enabled { return false }
            $0.subscriptions["\(tenant)|\(type)"] = .enabled
            return true
        }
    }

    func enabledTypes(_ tenant: Int) -> [(String, Subscription)] {
        counters.withLock { c in
            ContentGenerator.contentTypes.compactMap { type in c.subscriptions["\(tenant)|\(type)"].map { (type, $0) } }
        }
    }

    enum Admission { case ok, throttled, fault }

    /// Counts an API request: an injected fault, the tenant's per-minute budget, or fine.
    func admit(tenant: Int, now: Date) -> Admission {
        counters.withLock { c in
            c.apiRequests += 1
            if let every = configuration.faultEvery, every > 0, c.apiRequests % every == 0 {
                c.faults += 1
                return .fault
            }
            // A bucket refilled at the per-minute rate, holding two seconds' worth.
            guard let limit = configuration.throttlePerMinute, limit > 0 else { return .ok }
            let rate = Double(limit) / 60
            let capacity = max(1, rate * 2)
            let t = now.timeIntervalSince1970
            var bucket = c.buckets[tenant] ?? (capacity, t)
            bucket.tokens = min(capacity, bucket.tokens + (t - bucket.at) * rate)
            bucket.at = t
            defer { c.buckets[tenant] = bucket }
            guard bucket.tokens >= 1 else {
                c.throttled += 1
                return .throttled
            }
            bucket.tokens -= 1
            return .ok
        }
    }

    /// Whether this fetch of `contentID` fails on purpose: the blob is one of `blobFailureFraction` (a pure function
    /// of the seed and the id) and has been fetched fewer than `blobFailureAttempts` times before.
    func failsFetch(_ contentID: String) -> Bool {
        let fraction = configuration.blobFailureFraction
        guard fraction > 0, Deterministic.unit(configuration.seed, [Deterministic.stringHash(contentID), 404]) < fraction
        else { return false }
        return counters.withLock { c in
            let seen = c.failingFetches[contentID, default: 0]
            c.failingFetches[contentID] = seen + 1
            if seen < configuration.blobFailureAttempts { c.faults += 1 }
            return seen < configuration.blobFailureAttempts
        }
    }

    var stats: (requests: Int, throttled: Int, faults: Int, starts: Int) {
        counters.withLock { ($0.apiRequests, $0.throttled, $0.faults, $0.starts) }
    }
}

/// Verifies a client assertion as Entra does: RS256 with `x5t` (SHA-1 thumbprint) or PS256 with `x5t#S256`,
/// signed by the registered certificate's key, issued by the client, not expired.
enum AssertionVerifier {
    static func verify(_ jwt: String, certificatePEM: String, clientID: String, now: Date) -> Bool {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let headerData = Base64URL.decode(parts[0]), let claimsData = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2]),
            let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: claimsData)) as? [String: Any],
            let certificate = try? Certificate(pemEncoded: certificatePEM),
            let key = _RSA.Signing.PublicKey(certificate.publicKey)
        else { return false }
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(certificate)) != nil else { return false }
        let der = serializer.serializedBytes
        let padding: _RSA.Signing.Padding
        switch header["alg"] as? String {
        case "RS256":
            guard header["x5t"] as? String == Base64URL.encode(Array(Insecure.SHA1.hash(data: der))) else { return false }
            padding = .insecurePKCS1v1_5
        case "PS256":
            guard header["x5t#S256"] as? String == Base64URL.encode(Array(SHA256.hash(data: der))) else { return false }
            padding = .PSS
        default:
            return false
        }
        let signed = Array((parts[0] + "." + parts[1]).utf8)
        guard key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: signed, padding: padding) else {
            return false
        }
        let exp = (claims["exp"] as? NSNumber)?.doubleValue ?? 0
        return claims["iss"] as? String == clientID && claims["sub"] as? String == clientID && exp > now.timeIntervalSince1970
    }
}
