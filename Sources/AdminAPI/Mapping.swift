import CredentialCrypto
import Foundation
import GatewayCore

/// Conversions between the generated API types and the domain, with the domain's validation.
extension Components.Schemas.Tenant {
    init(_ tenant: Tenant) {
        self.init(
            id: "\(tenant.id)",
            name: tenant.name,
            tenantId: tenant.microsoftTenantID.uuidString.lowercased(),
            clientId: tenant.clientID.uuidString.lowercased(),
            cloud: Components.Schemas.Cloud(rawValue: tenant.cloud.rawValue)!,
            contentTypes: tenant.contentTypes.map { Components.Schemas.ContentType(rawValue: $0.rawValue)! },
            publisherId: tenant.publisherID?.uuidString.lowercased(),
            utmTenantId: tenant.utmTenantID,
            dataSource: tenant.dataSource,
            enabled: tenant.enabled,
            credentialType: CredentialTypePayload(rawValue: tenant.credentialKind.rawValue)!,
            secretExpiresAt: tenant.secretExpiresAt.map(RFC3339.format),
            secretExpirySource: tenant.secretExpirySource.flatMap { .init(rawValue: $0.rawValue) },
            createdAt: RFC3339.format(tenant.createdAt),
            updatedAt: RFC3339.format(tenant.updatedAt),
            version: tenant.version,
            destination: tenant.destination
        )
    }
}

extension Components.Schemas.Destination {
    init(_ destination: Destination) {
        self.init(endpoint: destination.endpoint, name: destination.name, source: .api, hasConnectionKey: destination.hasConnectionKey)
        createdAt = RFC3339.format(destination.createdAt)
        updatedAt = RFC3339.format(destination.updatedAt)
        version = destination.version
    }

    /// `default`, from the configuration: its CA is a file of the gateway's (O365GW_UTMSTACK_CA_FILE), not shown.
    init(configured endpoint: Destination.Endpoint) {
        let isNetwork = if case .network = endpoint { true } else { false }
        self.init(endpoint: endpoint, name: Destination.defaultName, source: .configuration, hasConnectionKey: isNetwork)
    }

    private init(endpoint: Destination.Endpoint, name: String, source: SourcePayload, hasConnectionKey: Bool) {
        switch endpoint {
        case .socket(let path):
            self.init(name: name, kind: .socket, source: source, socketPath: path, hasConnectionKey: hasConnectionKey)
        case .network(let host, let port, let serverName, let caPEM):
            self.init(
                name: name, kind: .network, source: source, host: host, port: port, serverName: serverName, caPem: caPEM,
                hasConnectionKey: hasConnectionKey)
        }
    }
}

extension Components.Schemas.DestinationState {
    init(_ health: DestinationHealth) {
        self.init(
            connection: .init(rawValue: health.connection.rawValue) ?? .unavailable, heldBytes: health.heldBytes,
            oldestUnacknowledgedSeconds: health.oldestUnacknowledgedSeconds,
            lastFailure: health.lastFailure.flatMap { .init(rawValue: $0.rawValue) })
    }
}

extension DestinationSettings {
    /// The name asked for, and the settings (the store validates both).
    static func requested(_ create: Components.Schemas.DestinationCreate) -> (name: String, settings: DestinationSettings) {
        switch create {
        case .socket(let body):
            return (body.name, DestinationSettings(endpoint: .socket(path: body.socketPath)))
        case .network(let body):
            let endpoint = Destination.Endpoint.network(host: body.host, port: body.port, serverName: body.serverName, caPEM: body.caPem)
            return (body.name, DestinationSettings(endpoint: endpoint, connectionKey: Secret(body.connectionKey)))
        }
    }
}

extension DestinationChanges {
    init(validating body: Components.Schemas.DestinationPatch) throws {
        self.init(
            kind: body.kind.map { $0 == .socket ? .socket : .network }, socketPath: body.socketPath, host: body.host,
            port: body.port, serverName: body.serverName, caPEM: body.caPem, connectionKey: body.connectionKey.map(Secret.init))
        if kind == nil, socketPath == nil, host == nil, port == nil, serverName == nil, caPEM == nil, connectionKey == nil {
            throw GatewayError(
                .invalidInput, code: "empty_patch",
                "The body changes nothing; give at least one of kind, socketPath, host, port, serverName, caPem, connectionKey.")
        }
    }
}

extension Components.Schemas.SecretExpiryReport.ItemsPayloadPayload {
    init(_ item: SecretExpiryItem) {
        self.init(
            id: "\(item.tenant.id)", name: item.tenant.name,
            tenantId: item.tenant.microsoftTenantID.uuidString.lowercased(),
            secretExpiresAt: item.expiresAt.map(RFC3339.format), daysLeft: item.daysLeft,
            status: .init(rawValue: item.status.rawValue)!,
            source: item.source.flatMap { .init(rawValue: $0.rawValue) },
            clientId: item.tenant.clientID.uuidString.lowercased(),
            graphLookup: item.tenant.secretExpiry.graph.flatMap { .init(rawValue: $0.outcome.rawValue) },
            advice: item.advice)
    }
}

/// Exactly one of a client secret and a certificate, validated; with the certificate's expiry.
func validatedCredential(
    secret: String?, certificate: Components.Schemas.ClientCertificate?
) throws -> (Credential, expiresAt: Date?) {
    switch (secret, certificate) {
    case (.some(let secret), nil):
        return (.clientSecret(try Validation.clientSecret(secret)), nil)
    case (nil, .some(let input)):
        let certificate = ClientCertificate(
            certificatePEM: input.certificatePem, privateKeyPEM: Secret(input.privateKeyPem),
            algorithm: input.algorithm.flatMap { ClientCertificate.Algorithm(rawValue: $0.rawValue) } ?? .ps256)
        let checked = try CertificateCredential(certificate)
        return (.certificate(certificate), checked.notValidAfter)
    case (nil, nil):
        throw GatewayError(
            .invalidInput, code: "missing_field", "clientSecret or clientCertificate is required (exactly one).")
    case (.some, .some):
        throw GatewayError(
            .invalidInput, code: "invalid_field", "Give either clientSecret or clientCertificate, not both.")
    }
}

extension NewTenant {
    /// The credential's oneOf (value2) holds nothing to read: `validatedCredential` enforces exactly one.
    init(validating create: Components.Schemas.TenantCreate) throws {
        let body = create.value1
        let name = try Validation.text(body.name, field: "name")
        let (credential, certificateExpiry) = try validatedCredential(secret: body.clientSecret, certificate: body.clientCertificate)
        self.init(
            name: name,
            microsoftTenantID: try Validation.guid(body.tenantId, field: "tenantId"),
            clientID: try Validation.guid(body.clientId, field: "clientId"),
            credential: credential,
            secretExpiresAt: try body.secretExpiresAt.map { try Validation.timestamp($0, field: "secretExpiresAt") }
                ?? certificateExpiry,
            publisherID: try body.publisherId.map { try Validation.guid($0, field: "publisherId") },
            contentTypes: try body.contentTypes.map { try Validation.contentTypes($0.map(\.rawValue)) }
                ?? ContentType.allCases,
            cloud: try body.cloud.map { try Validation.cloud($0.rawValue) } ?? .commercial,
            utmTenantID: try body.utmTenantId.map { try Validation.text($0, field: "utmTenantId") }
                ?? defaultUTMStackTenantID,
            dataSource: try body.dataSource.map { try Validation.text($0, field: "dataSource") } ?? name,
            destination: try body.destination.map { try Validation.destinationName($0, field: "destination") }
                ?? Destination.defaultName
        )
    }
}

extension TenantChanges {
    init(validating body: Components.Schemas.TenantPatch) throws {
        self.init(
            name: try body.name.map { try Validation.text($0, field: "name") },
            contentTypes: try body.contentTypes.map { try Validation.contentTypes($0.map(\.rawValue)) },
            enabled: body.enabled,
            publisherID: try body.publisherId.map { try Validation.guid($0, field: "publisherId") },
            utmTenantID: try body.utmTenantId.map { try Validation.text($0, field: "utmTenantId") },
            dataSource: try body.dataSource.map { try Validation.text($0, field: "dataSource") },
            destination: try body.destination.map { try Validation.destinationName($0, field: "destination") }
        )
        if isEmpty {
            throw GatewayError(
                .invalidInput, code: "empty_patch",
                "The body changes nothing; give at least one of name, contentTypes, enabled, publisherId, "
                    + "utmTenantId, dataSource, destination.")
        }
    }
}

/// Entity tags carry the tenant's version: `"7"`.
enum ETag {
    static func make(_ version: Int64) -> String { "\"\(version)\"" }

    /// Parses `If-Match` (RFC 9110 §13.1.1): nil means no precondition (absent or `*`); otherwise the versions of the
    /// strong entity tags it lists. Weak tags and anything else match nothing, so such a write answers 412.
    static func precondition(ifMatch: String?) -> VersionPrecondition? {
        guard let raw = ifMatch?.trimmingCharacters(in: .whitespaces), !raw.isEmpty, raw != "*" else { return nil }
        let versions = raw.split(separator: ",").compactMap { element -> Int64? in
            let tag = element.trimmingCharacters(in: .whitespaces)
            guard tag.count >= 3, tag.hasPrefix("\""), tag.hasSuffix("\"") else { return nil }
            return Int64(tag.dropFirst().dropLast())
        }
        return VersionPrecondition(Set(versions))
    }
}

func tenantID(_ raw: String) throws -> TenantID {
    guard let id = TenantID(raw) else {
        throw GatewayError(
            .notFound, code: "tenant_not_found",
            "No tenant has the id \(raw.prefix(60)); tenant ids are the GUIDs returned by GET /api/v1/tenants.")
    }
    return id
}

extension Components.Schemas.ContentTypeStatus {
    init(_ status: UnitStatus) {
        self.init(
            contentType: .init(rawValue: status.contentType.rawValue)!,
            state: .init(rawValue: status.state.rawValue)!,
            subscription: status.subscription.flatMap { .init(rawValue: $0.rawValue) },
            checkpoint: status.checkpoint.map(RFC3339.format), lagSeconds: status.lagSeconds,
            lastSuccessAt: status.lastSuccessAt.map(RFC3339.format),
            lastError: status.lastErrorCode.map { .init(code: $0, advice: status.lastErrorAdvice ?? "") },
            recordsForwarded: status.recordsForwarded, blobsSkipped: status.blobsSkipped,
            recordsDeadLettered: status.recordsDeadLettered, owner: status.owner)
    }
}

extension Components.Schemas.DeadLetter {
    init(_ stored: StoredDeadLetter) {
        let letter = stored.letter
        self.init(
            id: "\(stored.id)", tenantId: letter.tenant.map { "\($0)" },
            contentType: letter.contentType.flatMap { .init(rawValue: $0.rawValue) }, contentId: letter.contentID,
            destination: letter.destination, recordId: letter.recordID, logId: letter.logID, reason: .init(rawValue: letter.reason) ?? .refusedByEngine,
            detail: letter.detail, attempts: stored.attempts, bytes: stored.bytes,
            firstRefusedAt: RFC3339.format(stored.firstRefusedAt), lastRefusedAt: RFC3339.format(stored.lastRefusedAt))
    }
}

/// The expiry report as the API's JSON, for the shell (`o365-gateway report secret-expiry --format json`).
public enum SecretExpiryReportJSON {
    public static func encode(_ items: [SecretExpiryItem], generatedAt: Date, withinDays: Int) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(Components.Schemas.SecretExpiryReport(
            generatedAt: RFC3339.format(generatedAt), withinDays: withinDays,
            items: items.map(Components.Schemas.SecretExpiryReport.ItemsPayloadPayload.init)))
    }
}
