import Foundation

/// Everything the simulator does, as one Codable document (`--config FILE`) or built from flags.
public struct SimulatorConfiguration: Codable, Sendable {
    public struct Tenant: Codable, Sendable {
        public enum Mode: String, Codable, Sendable {
            /// Tokens and data as a healthy tenant.
            case ok
            /// The secret matches but has expired (AADSTS7000222).
            case expiredSecret
            /// Tokens without roles: the API answers AF10001 (no admin consent to ActivityFeed.Read).
            case noConsent
            /// The app is not provisioned in this tenant (AADSTS700016).
            case appNotFound
        }

        public var name: String
        public var tenantId: UUID
        public var clientId: UUID
        /// The valid client secret (another secret gets AADSTS7000215).
        public var clientSecret: String?
        /// A PEM certificate whose key may sign client assertions instead.
        public var certificatePem: String?
        public var mode: Mode
        /// Content types whose subscription a tenant admin disabled (AF20023 until started again).
        public var disabledContentTypes: [String]
        /// Whether Graph answers `applications` (Application.Read.All granted).
        public var graphPermission: Bool
        public var secretExpiresAt: String?
        /// The app registration's credentials as Graph lists them; nil for one secret matching `clientSecret` that
        /// ends at `secretExpiresAt` (and, with a certificate, one key credential with its thumbprint and end).
        public var registration: Registration?

        /// An app registration as Graph shows it (`passwordCredentials`, `keyCredentials`).
        public struct Registration: Codable, Sendable {
            public struct Credential: Codable, Sendable {
                public var hint: String?
                /// Base64 of the certificate thumbprint, for key credentials.
                public var customKeyIdentifier: String?
                public var endDateTime: String
                public init(hint: String? = nil, customKeyIdentifier: String? = nil, endDateTime: String) {
                    self.hint = hint
                    self.customKeyIdentifier = customKeyIdentifier
                    self.endDateTime = endDateTime
                }
            }
            /// False when the application object lives in another tenant (a multi-tenant app): `value` is empty.
            public var inThisTenant: Bool
            public var passwordCredentials: [Credential]
            public var keyCredentials: [Credential]
            public init(inThisTenant: Bool = true, passwordCredentials: [Credential] = [], keyCredentials: [Credential] = []) {
                self.inThisTenant = inThisTenant
                self.passwordCredentials = passwordCredentials
                self.keyCredentials = keyCredentials
            }
        }

        public init(
            name: String, tenantId: UUID, clientId: UUID, clientSecret: String?, certificatePem: String? = nil,
            mode: Mode = .ok, disabledContentTypes: [String] = [], graphPermission: Bool = true, secretExpiresAt: String? = nil
        ) {
            self.name = name
            self.tenantId = tenantId
            self.clientId = clientId
            self.clientSecret = clientSecret
            self.certificatePem = certificatePem
            self.mode = mode
            self.disabledContentTypes = disabledContentTypes
            self.graphPermission = graphPermission
            self.secretExpiresAt = secretExpiresAt
            self.registration = nil
        }
    }

    public var seed: UInt64 = 42
    public var tenants: [Tenant] = []
    /// One blob per content type per interval.
    public var blobIntervalSeconds: Int = 60
    public var recordsPerBlob: Int = 20
    /// How far back blobs exist when the simulator starts (at most 7 days are listable anyway).
    public var historyHours: Double = 24
    /// One large tenant: the first tenant's `contentType` has `hours` of history instead (a long backfill beside
    /// an otherwise quiet fleet).
    public var backlog: Backlog?

    public struct Backlog: Codable, Sendable {
        public var contentType: String
        public var hours: Double

        public init(contentType: String, hours: Double) {
            self.contentType = contentType
            self.hours = hours
        }
    }
    /// Delay between `contentCreated` and a blob becoming listable.
    public var latencySeconds: Int = 30
    /// Share of blobs listed late: they appear `lateDelaySeconds` after their `contentCreated`.
    public var lateFraction: Double = 0.05
    public var lateDelaySeconds: Int = 900
    /// Share of blobs that repeat the last record of the blob before them (same `Id`, same bytes).
    public var duplicateFraction: Double = 0.05
    public var pageSize: Int = 100
    /// API requests per tenant per minute (refilled continuously, bursts of two seconds' worth) before AF429;
    /// nil for no throttling.
    public var throttlePerMinute: Int?
    /// 403 (as Microsoft documents) or 429.
    public var throttleStatus: Int = 403
    /// Sent as `Retry-After` with AF429 when set.
    public var retryAfterSeconds: Int?
    /// Every Nth API request fails with HTTP 500 AF50000; nil for none.
    public var faultEvery: Int?
    /// Share of blobs whose first `blobFailureAttempts` fetches fail with `blobFailureStatus` and no AF code: what a
    /// front end or proxy answers during a deployment (404 `{"Message": "No HTTP resource was found ..."}`, or a
    /// 502/503 page). Such a blob is not gone: a client must retry it, never skip it.
    public var blobFailureFraction: Double = 0
    public var blobFailureAttempts: Int = 2
    public var blobFailureStatus: Int = 404
    /// Keep producing blobs as time passes; when false, content stops at the start time.
    public var live: Bool = true
    /// Token lifetime.
    public var tokenLifetimeSeconds: Int = 3599

    public init() {}

    /// `count` healthy tenants with ids and secrets derived from the seed, for the demo and benchmarks.
    public static func generated(tenants count: Int, seed: UInt64 = 42) -> SimulatorConfiguration {
        var configuration = SimulatorConfiguration()
        configuration.seed = seed
        let names = ["Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware", "Adatum", "Woodgrove", "Proseware"]
        configuration.tenants = (0..<count).map { i in
            let name = count <= names.count ? names[i] : "\(names[i % names.count]) \(i / names.count + 1)"
            return Tenant(
                name: name, tenantId: Deterministic.uuid(seed, "tenant", UInt64(i)),
                clientId: Deterministic.uuid(seed, "client", UInt64(i)),
                clientSecret: "sim~\(Deterministic.uuid(seed, "secret", UInt64(i)).uuidString.lowercased().prefix(30))",
                secretExpiresAt: "2027-06-30T00:00:00Z")
        }
        return configuration
    }
}

/// Seeded, stateless randomness: every value is a hash of the seed and its coordinates.
enum Deterministic {
    static func hash(_ seed: UInt64, _ parts: [UInt64]) -> UInt64 {
        var x = seed &+ 0x9E37_79B9_7F4A_7C15
        for part in parts {
            x ^= part &+ 0x9E37_79B9_7F4A_7C15 &+ (x << 6) &+ (x >> 2)
            x = mix(x)
        }
        return x
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func unit(_ seed: UInt64, _ parts: [UInt64]) -> Double {
        Double(hash(seed, parts) >> 11) / Double(1 << 53)
    }

    static func stringHash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return h
    }

    static func uuid(_ seed: UInt64, _ label: String, _ index: UInt64) -> UUID {
        let a = hash(seed, [stringHash(label), index, 1])
        let b = hash(seed, [stringHash(label), index, 2])
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(i))) }
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * UInt64(i))) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
                           bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
