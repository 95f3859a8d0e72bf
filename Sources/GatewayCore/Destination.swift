import Foundation

/// A named UTMStack instance that tenants' records go to (docs/destinations.md). `default` is the one the
/// configuration defines; the others are stored.
public struct Destination: Sendable, Equatable {
    public static let defaultName = "default"

    public enum Endpoint: Sendable, Equatable {
        /// The engine's Unix socket, on this host (or a volume shared with the engine).
        case socket(path: String)
        /// UTMStack's network path: gRPC over TLS, verified against `caPEM` (the system's roots when nil) for
        /// `serverName` (the host when nil); the connection key is sealed apart.
        case network(host: String, port: Int, serverName: String?, caPEM: String?)
    }

    public var name: String
    public var endpoint: Endpoint
    /// Whether a connection key is stored (never the key itself).
    public var hasConnectionKey: Bool
    public var version: Int64
    public var createdAt: Date
    public var updatedAt: Date

    public init(name: String, endpoint: Endpoint, hasConnectionKey: Bool, version: Int64, createdAt: Date, updatedAt: Date) {
        self.name = name
        self.endpoint = endpoint
        self.hasConnectionKey = hasConnectionKey
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// What a destination is created or replaced with; the connection key is for the network path only.
public struct DestinationSettings: Sendable {
    public var endpoint: Destination.Endpoint
    public var connectionKey: Secret?

    public init(endpoint: Destination.Endpoint, connectionKey: Secret? = nil) {
        self.endpoint = endpoint
        self.connectionKey = connectionKey
    }

    /// Checks what no store should hold: a network destination without its key, a socket one with a key, a port
    /// out of range, a relative socket path.
    public func validated() throws -> DestinationSettings {
        switch endpoint {
        case .socket(let path):
            guard path.hasPrefix("/"), !path.contains("\0") else {
                throw GatewayError.invalidField("socketPath", "must be an absolute path such as /utmstack/engine.sock.")
            }
            guard connectionKey == nil else {
                throw GatewayError.invalidField("connectionKey", "is for the network path only; a socket needs none.")
            }
        case .network(let host, let port, _, _):
            guard !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
                throw GatewayError.invalidField("host", "must be a host name or an IP address such as utmstack.example.net.")
            }
            guard (1...65535).contains(port) else {
                throw GatewayError.invalidField("port", "must be between 1 and 65535 (got \(port)).")
            }
            guard let key = connectionKey, !key.unredacted.isEmpty else {
                throw GatewayError.invalidField("connectionKey", "is required on the network path (UTMStack's federation connection key).")
            }
        }
        return self
    }
}

extension Validation {
    /// A destination's name: a DNS label (it is a metric label and a URL segment).
    public static func destinationName(_ value: String, field: String = "name") throws -> String {
        let bytes = Array(value.utf8)
        let allowed = { (b: UInt8) in (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D }
        guard (1...63).contains(bytes.count), bytes.allSatisfy(allowed), bytes.first != 0x2D, bytes.last != 0x2D else {
            throw GatewayError.invalidField(
                field, "must be 1 to 63 lower-case letters, digits or inner hyphens, such as eu-west or customer-42 (got \(quoted(value))).")
        }
        return value
    }

    /// The name of a destination to store: not `default`, which the configuration defines.
    public static func newDestinationName(_ value: String, field: String = "name") throws -> String {
        guard value != Destination.defaultName else {
            throw GatewayError.invalidField(
                field, "default is the destination the configuration defines (O365GW_UTMSTACK_*); choose another name.")
        }
        return try destinationName(value, field: field)
    }
}

extension GatewayError {
    public static func destinationNotFound(_ name: String) -> GatewayError {
        GatewayError(.notFound, code: "destination_not_found", "No destination is named \(name). List them with GET /api/v1/destinations.")
    }
}
