import Foundation

/// The gateway's own id of an onboarded customer tenant (not the Microsoft tenant GUID).
public struct TenantID: Hashable, Sendable, CustomStringConvertible {
    public let uuid: UUID
    public init(_ uuid: UUID) { self.uuid = uuid }
    public init() { self.uuid = UUID() }
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }
    /// Lower-case canonical form, as stored and as shown in the API.
    public var description: String { uuid.uuidString.lowercased() }
}

/// The five audit feeds of the Office 365 Management Activity API (case-exact, as Microsoft spells them).
public enum ContentType: String, CaseIterable, Sendable, Hashable, Comparable {
    case azureActiveDirectory = "Audit.AzureActiveDirectory"
    case exchange = "Audit.Exchange"
    case sharePoint = "Audit.SharePoint"
    case general = "Audit.General"
    case dlpAll = "DLP.All"

    public static func < (lhs: ContentType, rhs: ContentType) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Microsoft cloud a tenant lives in; it decides the login, manage and Graph hosts.
/// `china` (21Vianet) is experimental: Microsoft does not document its Activity API host.
public enum Cloud: String, CaseIterable, Sendable, Hashable {
    case commercial, gcc, gcchigh, dod, china
}

/// How the gateway authenticates to Microsoft for one tenant. Sealed at rest; never returned by the API.
public enum Credential: Sendable, Equatable, CustomStringConvertible {
    case clientSecret(Secret)
    case certificate(ClientCertificate)

    public var kind: CredentialKind {
        switch self {
        case .clientSecret: .secret
        case .certificate: .certificate
        }
    }

    public var description: String { "Credential(\(kind.rawValue), <redacted>)" }
}

public enum CredentialKind: String, Sendable {
    case secret, certificate
}

/// A certificate credential: the certificate registered on the app (public) and its RSA private key (secret).
public struct ClientCertificate: Sendable, Equatable, CustomStringConvertible {
    /// How the client assertion is signed: RS256 with the SHA-1 thumbprint (`x5t`, older documentation), or
    /// PS256 with the SHA-256 thumbprint (`x5t#S256`, current Entra documentation).
    public enum Algorithm: String, Sendable, CaseIterable {
        case rs256 = "RS256", ps256 = "PS256"
    }

    public var certificatePEM: String
    public var privateKeyPEM: Secret
    public var algorithm: Algorithm

    public init(certificatePEM: String, privateKeyPEM: Secret, algorithm: Algorithm = .ps256) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.algorithm = algorithm
    }

    public var description: String { "ClientCertificate(\(algorithm.rawValue), <redacted key>)" }
}

/// The UTMStack tenant id used by single-tenant UTMStack installations.
public let defaultUTMStackTenantID = "ce66672c-e36d-4761-a8c8-90058fee1a24"

/// A tenant as stored in the registry, without its credential.
public struct Tenant: Sendable, Equatable {
    public var id: TenantID
    public var name: String
    /// The customer's Microsoft Entra tenant GUID.
    public var microsoftTenantID: UUID
    /// The application (client) id of the app registration.
    public var clientID: UUID
    public var cloud: Cloud
    public var contentTypes: [ContentType]
    public var publisherID: UUID?
    public var utmTenantID: String
    public var dataSource: String
    public var enabled: Bool
    public var credentialKind: CredentialKind
    /// What is known of when the credential stops working (`secretExpiresAt` is the date as best known).
    public var secretExpiry: SecretExpiryEvidence
    /// Grows by one with every new credential; what Graph found and what was alerted belong to one generation.
    public var credentialGeneration: Int64
    public var createdAt: Date
    public var updatedAt: Date
    /// Grows by one on every change; used for optimistic concurrency (ETag / If-Match).
    public var version: Int64
    /// The UTMStack destination its records go to (docs/destinations.md).
    public var destination: String
    /// That destination's generation when the tenant was read (nil: `default`): a forwarder of an older generation
    /// is not this tenant's destination any more, however the name reads.
    public var destinationGeneration: Int64?

    public init(
        id: TenantID, name: String, microsoftTenantID: UUID, clientID: UUID, cloud: Cloud,
        contentTypes: [ContentType], publisherID: UUID?, utmTenantID: String, dataSource: String, enabled: Bool,
        credentialKind: CredentialKind, secretExpiry: SecretExpiryEvidence, credentialGeneration: Int64 = 1,
        createdAt: Date, updatedAt: Date, version: Int64, destination: String = Destination.defaultName,
        destinationGeneration: Int64? = nil
    ) {
        self.id = id
        self.name = name
        self.microsoftTenantID = microsoftTenantID
        self.clientID = clientID
        self.cloud = cloud
        self.contentTypes = contentTypes
        self.publisherID = publisherID
        self.utmTenantID = utmTenantID
        self.dataSource = dataSource
        self.enabled = enabled
        self.credentialKind = credentialKind
        self.secretExpiry = secretExpiry
        self.credentialGeneration = credentialGeneration
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
        self.destination = destination
        self.destinationGeneration = destinationGeneration
    }
}

extension Tenant {
    /// When the credential stops working, as best known (Microsoft's refusal, then Graph, then the operator).
    public var secretExpiresAt: Date? { secretExpiry.effective?.expiresAt }
    public var secretExpirySource: SecretExpirySource? { secretExpiry.effective?.source }
}

/// A validated onboarding request.
public struct NewTenant: Sendable {
    public var name: String
    public var microsoftTenantID: UUID
    public var clientID: UUID
    public var credential: Credential
    public var secretExpiresAt: Date?
    public var publisherID: UUID?
    public var contentTypes: [ContentType]
    public var cloud: Cloud
    public var utmTenantID: String
    public var dataSource: String
    public var destination: String

    public init(
        name: String, microsoftTenantID: UUID, clientID: UUID, credential: Credential, secretExpiresAt: Date?,
        publisherID: UUID?, contentTypes: [ContentType], cloud: Cloud, utmTenantID: String, dataSource: String,
        destination: String = Destination.defaultName
    ) {
        self.name = name
        self.microsoftTenantID = microsoftTenantID
        self.clientID = clientID
        self.credential = credential
        self.secretExpiresAt = secretExpiresAt
        self.publisherID = publisherID
        self.contentTypes = contentTypes
        self.cloud = cloud
        self.utmTenantID = utmTenantID
        self.dataSource = dataSource
        self.destination = destination
    }
}

/// A validated partial update; `nil` leaves a field unchanged.
public struct TenantChanges: Sendable, Equatable {
    public var name: String?
    public var contentTypes: [ContentType]?
    public var enabled: Bool?
    public var publisherID: UUID?
    public var utmTenantID: String?
    public var dataSource: String?
    public var destination: String?

    public init(
        name: String? = nil, contentTypes: [ContentType]? = nil, enabled: Bool? = nil, publisherID: UUID? = nil,
        utmTenantID: String? = nil, dataSource: String? = nil, destination: String? = nil
    ) {
        self.name = name
        self.contentTypes = contentTypes
        self.enabled = enabled
        self.publisherID = publisherID
        self.utmTenantID = utmTenantID
        self.dataSource = dataSource
        self.destination = destination
    }

    public var isEmpty: Bool { self == TenantChanges() }
}
