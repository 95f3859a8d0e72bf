/// An error with a stable snake_case code and a message that says what to do.
///
/// The message never contains a secret. Mapping to an HTTP status (or a gRPC status) happens only at the edge,
/// from ``Kind``.
public struct GatewayError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidInput
        case unauthorized
        case notFound
        case conflict
        case preconditionFailed
        case payloadTooLarge
        case unsupportedMediaType
        case notImplemented
        case unavailable
        case `internal`
    }

    public var kind: Kind
    public var code: String
    public var message: String
    /// With `version_mismatch`: the resource's current version, answered as its ETag.
    public var currentVersion: Int64?

    public init(_ kind: Kind, code: String, _ message: String, currentVersion: Int64? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.currentVersion = currentVersion
    }

    public var description: String { "\(code): \(message)" }
}

extension GatewayError {
    public static func invalidField(_ field: String, _ message: String) -> GatewayError {
        GatewayError(.invalidInput, code: "invalid_field", "\(field): \(message)")
    }

    public static func missingField(_ field: String) -> GatewayError {
        GatewayError(.invalidInput, code: "missing_field", "\(field) is required.")
    }

    public static func tenantNotFound(_ id: String) -> GatewayError {
        GatewayError(.notFound, code: "tenant_not_found", "No tenant has the id \(id). List tenants with GET /api/v1/tenants.")
    }

    /// `of` names what was changed: `tenant` or `destination`.
    public static func versionMismatch(current: Int64, of resource: String = "tenant") -> GatewayError {
        GatewayError(
            .preconditionFailed, code: "version_mismatch",
            "The \(resource) was changed since your If-Match value (or it names no ETag of the \(resource)); its current ETag is "
                + "\"\(current)\". Read it again and retry.",
            currentVersion: current)
    }
}
