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
        _ = try endpoint.validated()
        switch endpoint {
        case .socket:
            guard connectionKey == nil else {
                throw GatewayError.invalidField("connectionKey", "is for the network path only; a socket needs none.")
            }
        case .network:
            guard let connectionKey else {
                throw GatewayError.invalidField("connectionKey", "is required on the network path (UTMStack's federation connection key).")
            }
            try Self.checkKey(connectionKey)
        }
        return self
    }

    /// A connection key as the forwarder sends it: 1 to `Validation.maxSecretLength` characters.
    public static func checkKey(_ key: Secret) throws {
        guard !key.unredacted.isEmpty else {
            throw GatewayError.invalidField("connectionKey", "is required on the network path (UTMStack's federation connection key).")
        }
        guard key.unredacted.count <= Validation.maxSecretLength else {
            throw GatewayError.invalidField("connectionKey", "must be at most \(Validation.maxSecretLength) characters.")
        }
        guard !key.unredacted.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw GatewayError.invalidField("connectionKey", "must not contain control characters.")
        }
    }

    /// A network destination's key is bound to where it is sent: a change of host, port, server name or CA (or a
    /// change to the network path) needs the key again, so that a key stored for one UTMStack never goes to another.
    public static func connectionKeyRequired() -> GatewayError {
        GatewayError(
            .invalidInput, code: "connection_key_required",
            "connectionKey: is required when host, port, serverName or caPem change (or the kind becomes network): the "
                + "stored key belongs to the UTMStack it was given for and is never sent anywhere else.")
    }
}

extension Destination.Endpoint {
    /// Checks what no store should hold: a relative socket path, a host that is no host, a port out of range, a CA
    /// that PostgreSQL cannot store as text.
    public func validated() throws -> Destination.Endpoint {
        switch self {
        case .socket(let path):
            guard path.hasPrefix("/"), path.utf8.count >= 2, path.utf8.count <= 1024, !path.contains("\0") else {
                throw GatewayError.invalidField("socketPath", "must be an absolute path such as /utmstack/engine.sock (at most 1024 bytes).")
            }
        case .network(let host, let port, let serverName, let caPEM):
            try Self.checkHost(host, field: "host")
            if let serverName { try Self.checkHost(serverName, field: "serverName") }
            guard (1...65535).contains(port) else {
                throw GatewayError.invalidField("port", "must be between 1 and 65535 (got \(port)).")
            }
            if let caPEM, caPEM.utf8.count > 65536 || caPEM.contains("\0") {
                throw GatewayError.invalidField("caPem", "must be PEM text of at most 65536 bytes.")
            }
        }
        return self
    }

    static func checkHost(_ host: String, field: String) throws {
        let refused = { (c: Character) in c.isWhitespace || c == "/" || c.unicodeScalars.contains { $0.properties.generalCategory == .control } }
        guard (1...253).contains(host.utf8.count), !host.contains(where: refused) else {
            throw GatewayError.invalidField(field, "must be a host name or an IP address such as utmstack.example.net.")
        }
    }
}

/// A PATCH of a stored destination: absent fields stay (but a new host drops the old server name); a new kind needs
/// its own fields; the key stays only while the endpoint does (``DestinationSettings/connectionKeyRequired()``).
public struct DestinationChanges: Sendable {
    public enum Kind: String, Sendable { case socket, network }
    public var kind: Kind?
    public var socketPath: String?
    public var host: String?
    public var port: Int?
    public var serverName: String?
    public var caPEM: String?
    public var connectionKey: Secret?

    public init(
        kind: Kind? = nil, socketPath: String? = nil, host: String? = nil, port: Int? = nil, serverName: String? = nil,
        caPEM: String? = nil, connectionKey: Secret? = nil
    ) {
        self.kind = kind
        self.socketPath = socketPath
        self.host = host
        self.port = port
        self.serverName = serverName
        self.caPEM = caPEM
        self.connectionKey = connectionKey
    }

    /// The endpoint after the changes; throws naming the field that a new kind lacks, or that the kind does not take.
    public func applied(to current: Destination.Endpoint) throws -> Destination.Endpoint {
        let becomesSocket = if let kind { kind == .socket } else if case .socket = current { true } else { false }
        if becomesSocket {
            let networkField = [("host", host != nil), ("port", port != nil), ("serverName", serverName != nil), ("caPem", caPEM != nil),
                                ("connectionKey", connectionKey != nil)].first { $0.1 }
            if let (field, _) = networkField {
                throw GatewayError.invalidField(field, "is for the network path; a socket destination takes socketPath only (give kind network to change it).")
            }
        } else if socketPath != nil {
            throw GatewayError.invalidField("socketPath", "is for the socket kind; a network destination takes host, port and the rest (give kind socket to change it).")
        }
        switch current {
        case .socket(let path):
            if becomesSocket { return .socket(path: socketPath ?? path) }
            guard let host else { throw GatewayError.missingField("host") }
            guard let port else { throw GatewayError.missingField("port") }
            return .network(host: host, port: port, serverName: serverName, caPEM: caPEM)
        case .network(let oldHost, let oldPort, let oldServerName, let oldCA):
            if becomesSocket {
                guard let socketPath else { throw GatewayError.missingField("socketPath") }
                return .socket(path: socketPath)
            }
            // A new host is verified under its own name unless a server name is given with it.
            let keptServerName = host == nil || host == oldHost ? oldServerName : nil
            return .network(host: host ?? oldHost, port: port ?? oldPort, serverName: serverName ?? keptServerName, caPEM: caPEM ?? oldCA)
        }
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
    /// A poll's destination was changed or deleted while it ran: the batch was not taken (it is collected again, to
    /// the destination as it is now).
    public static func destinationChanged(_ name: String) -> GatewayError {
        GatewayError(
            .unavailable, code: "destination_changed",
            "Destination \(name) was changed or deleted during the poll; the records not yet sent go where the tenant's destination points now.")
    }

    /// A poll gave up on the tenant's destination, or did not start: nothing was lost (collection resumes from the
    /// checkpoint once the destination takes logs again), and the other destinations' tenants are not held back.
    public static func destinationUnavailable(_ name: String, _ why: String) -> GatewayError {
        GatewayError(
            .unavailable, code: "utmstack_unavailable",
            "UTMStack destination \(name) does not take logs: \(why). This tenant's records wait at Microsoft (up to 7 "
                + "days) and are collected from the checkpoint once it answers; other destinations are not affected.")
    }

    public static func destinationNotFound(_ name: String) -> GatewayError {
        GatewayError(.notFound, code: "destination_not_found", "No destination is named \(name). List them with GET /api/v1/destinations.")
    }
}

/// A destination's forwarder as one replica sees it (`GET /api/v1/destinations/{name}`).
public struct DestinationHealth: Sendable, Equatable {
    public enum Connection: String, Sendable {
        /// Nothing to deliver, so not connected (the forwarder connects when it has logs).
        case idle
        case connected
        /// Its connection fails, or it acknowledged nothing for the acknowledgement timeout while holding logs:
        /// its tenants' polls do not start (one at a time probes it).
        case unavailable
    }

    /// Why a connection to a destination failed, in fixed words: never an error's own description, which can name
    /// the service that answered, the gateway's file paths or the address of a port probed.
    public enum Failure: String, Sendable, CaseIterable {
        case unreachable = "connection refused or unreachable"
        case timedOut = "timed out"
        case tlsHandshake = "TLS handshake failed"
        case refused = "engine refused the stream"
        case protocolError = "protocol error"
        case lost = "connection lost"
    }

    public var connection: Connection
    /// Bytes of logs held (queued or awaiting acknowledgement).
    public var heldBytes: Int
    public var oldestUnacknowledgedSeconds: Double
    /// The last connection failure while unavailable.
    public var lastFailure: Failure?

    public init(connection: Connection, heldBytes: Int, oldestUnacknowledgedSeconds: Double, lastFailure: Failure?) {
        self.connection = connection
        self.heldBytes = heldBytes
        self.oldestUnacknowledgedSeconds = oldestUnacknowledgedSeconds
        self.lastFailure = lastFailure
    }
}

/// A stored destination as its forwarder needs it (``DestinationStore/forwardingDestinations()``).
public struct ForwardingDestination: Sendable {
    public var name: String
    /// Never reused: every create and every change of a destination takes a new one, so a destination deleted and
    /// created again under its name is a new destination, never the old one's forwarder.
    public var generation: Int64
    /// Its endpoint and connection key (unsealed), or why it cannot be used (its key does not open, its endpoint is
    /// no longer allowed): such a destination fails alone.
    public var settings: Result<DestinationSettings, GatewayError>

    public init(name: String, generation: Int64, settings: Result<DestinationSettings, GatewayError>) {
        self.name = name
        self.generation = generation
        self.settings = settings
    }
}

/// The forwarders' state per destination (the router's).
public protocol DestinationMonitor: Sendable {
    /// Nil when this replica has no forwarder for it (yet).
    func health(of name: String) async -> DestinationHealth?
}
