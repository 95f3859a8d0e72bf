import CredentialCrypto
import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// The stored UTMStack destinations (docs/destinations.md); `default` is the configuration's and not here. A
/// connection key is sealed before it reaches SQL and opened only for the forwarder that uses it.
public struct PostgresDestinationStore: DestinationStore {
    let database: Database
    let sealer: CredentialSealer
    /// Where destinations may point; checked on every write and when forwarders load them.
    let policy: DestinationPolicy
    let logger: Logger

    public init(database: Database, sealer: CredentialSealer, policy: DestinationPolicy, logger: Logger) {
        self.database = database
        self.sealer = sealer
        self.policy = policy
        self.logger = logger
    }

    static let columns = """
        name, kind, socket_path, host, port, server_name, ca_pem, connection_key_box IS NOT NULL AS has_key,
        version, created_at, updated_at
        """

    /// The endpoint as it may be stored: well-formed, its CA a certificate, inside the policy.
    func checked(_ endpoint: Destination.Endpoint) throws -> Destination.Endpoint {
        let endpoint = try endpoint.validated()
        if case .network(_, _, _, let caPEM?) = endpoint { try TrustAnchors.check(caPEM) }
        try policy.check(endpoint)
        return endpoint
    }

    public func create(_ name: String, _ settings: DestinationSettings) async throws -> Destination {
        let name = try Validation.newDestinationName(name)
        let settings = try settings.validated()
        _ = try checked(settings.endpoint)
        let sealed = try settings.connectionKey.map { try sealer.sealConnectionKey($0, destination: name) }
        let row = Row(settings.endpoint)
        let rows = try await database.query(
            """
            INSERT INTO destinations (name, kind, socket_path, host, port, server_name, ca_pem, connection_key_id, connection_key_box)
            VALUES (\(name), \(row.kind), \(row.socketPath), \(row.host), \(row.port), \(row.serverName), \(row.caPEM),
                \(sealed?.keyID), \(sealed?.box))
            ON CONFLICT (name) DO NOTHING
            RETURNING \(unescaped: Self.columns)
            """)
        guard let destination = try rows.map(Destination.init(row:)).first else {
            throw GatewayError(
                .conflict, code: "destination_exists",
                "A destination is already named \(name); change it with PATCH /api/v1/destinations/\(name) instead.")
        }
        logger.info("destination created", metadata: ["destination": "\(name)", "kind": "\(row.kind)"])
        return destination
    }

    public func list() async throws -> [Destination] {
        try await database.query("SELECT \(unescaped: Self.columns) FROM destinations ORDER BY name").map(Destination.init(row:))
    }

    public func get(_ name: String) async throws -> Destination? {
        let name = try Validation.destinationName(name)
        return try await database.query("SELECT \(unescaped: Self.columns) FROM destinations WHERE name = \(name)")
            .map(Destination.init(row:)).first
    }

    /// Applies `changes` under the row's lock; a network destination keeps its sealed key only while its endpoint
    /// stays the same (a new host, port, server name or CA needs the key again: `connection_key_required`).
    public func update(_ name: String, _ changes: DestinationChanges, precondition: VersionPrecondition?) async throws -> Destination {
        let name = try Validation.newDestinationName(name)
        let store = self
        if let key = changes.connectionKey { try DestinationSettings.checkKey(key) }
        let fresh = try changes.connectionKey.map { try sealer.sealConnectionKey($0, destination: name) }
        return try await database.transaction { tx in
            try await Self.lockAndCheck(tx, name, precondition: precondition)
            let rows = try await tx.query(
                "SELECT \(unescaped: Self.columns), connection_key_id, connection_key_box FROM destinations WHERE name = \(name)")
            guard let row = rows.first else { throw GatewayError.destinationNotFound(name) }
            let current = try Destination(row: row)
            let r = row.makeRandomAccess()
            let kept = try r["connection_key_id"].decode(String?.self).flatMap { id in
                try r["connection_key_box"].decode(Data?.self).map { SealedCredential(keyID: id, box: $0) }
            }
            let endpoint = try store.checked(changes.applied(to: current.endpoint))
            var key: SealedCredential?
            if case .network = endpoint {
                if let fresh {
                    key = fresh
                } else if endpoint == current.endpoint, let kept {
                    key = kept
                } else {
                    throw DestinationSettings.connectionKeyRequired()
                }
            }
            let columns = Row(endpoint)
            let updated = try await tx.query(
                """
                UPDATE destinations SET kind = \(columns.kind), socket_path = \(columns.socketPath), host = \(columns.host),
                    port = \(columns.port), server_name = \(columns.serverName), ca_pem = \(columns.caPEM),
                    connection_key_id = \(key?.keyID), connection_key_box = \(key?.box),
                    version = version + 1, generation = nextval('destination_generations'), updated_at = now()
                WHERE name = \(name)
                RETURNING \(unescaped: Self.columns)
                """)
            guard let destination = try updated.map(Destination.init(row:)).first else { throw GatewayError.destinationNotFound(name) }
            return destination
        }
    }

    /// Deletes the destination; refused while a tenant names it (the row lock keeps a tenant from naming it meanwhile).
    public func delete(_ name: String, precondition: VersionPrecondition?) async throws {
        let name = try Validation.newDestinationName(name)
        try await database.transaction { tx in
            try await Self.lockAndCheck(tx, name, precondition: precondition)
            let users = try await tx.query("SELECT count(*) FROM tenants WHERE destination = \(name)").decode(Int64.self).first ?? 0
            guard users == 0 else {
                throw GatewayError(
                    .conflict, code: "destination_in_use",
                    "\(users) tenant(s) send to destination \(name); move them first (PATCH /api/v1/tenants/{id} with another destination).")
            }
            try await tx.query("DELETE FROM destinations WHERE name = \(name)")
        }
        logger.info("destination deleted", metadata: ["destination": "\(name)"])
    }

    /// The tenants that name the destination (`default` included).
    public func tenants(of name: String) async throws -> [TenantID] {
        let name = try Validation.destinationName(name)
        return try await database.query("SELECT id FROM tenants WHERE destination = \(name) ORDER BY id").decode(UUID.self).map(TenantID.init)
    }

    /// Every destination's generation, endpoint and connection key, in one statement (so a key is never paired
    /// with another generation's endpoint); each is checked against the policy and its key unsealed on its own, so
    /// one that cannot be used fails alone.
    public func forwardingDestinations() async throws -> [ForwardingDestination] {
        let rows = try await database.query(
            """
            SELECT \(unescaped: Self.columns), generation, connection_key_id, connection_key_box FROM destinations ORDER BY name
            """)
        return rows.map { row in
            let r = row.makeRandomAccess()
            let name = (try? r["name"].decode(String.self)) ?? ""
            let generation = (try? r["generation"].decode(Int64.self)) ?? 0
            return ForwardingDestination(name: name, generation: generation, settings: forwardingSettings(row, name: name))
        }
    }

    private func forwardingSettings(_ row: PostgresRow, name: String) -> Result<DestinationSettings, GatewayError> {
        do {
            let r = row.makeRandomAccess()
            let endpoint = try checked(try Destination(row: row).endpoint)
            let sealed = try r["connection_key_id"].decode(String?.self).flatMap { id in
                try r["connection_key_box"].decode(Data?.self).map { SealedCredential(keyID: id, box: $0) }
            }
            let key = try sealed.map { try sealer.openConnectionKey($0, destination: name) }
            return .success(try DestinationSettings(endpoint: endpoint, connectionKey: key).validated())
        } catch let error as GatewayError {
            return .failure(error)
        } catch {
            return .failure(GatewayError(.internal, code: "corrupt_row", "Destination \(name)'s row cannot be read."))
        }
    }

    /// Locks the tenant-facing side: inside a tenant's write, makes sure the destination it names exists and stays
    /// until that write commits.
    public static func requireExisting(_ tx: DatabaseConnection, _ name: String) async throws {
        if name == Destination.defaultName { return }
        let found = try await tx.query("SELECT 1 FROM destinations WHERE name = \(name) FOR SHARE")
        guard !found.isEmpty else {
            throw GatewayError(
                .invalidInput, code: "destination_unknown",
                "destination: no destination is named \(name); create it with POST /api/v1/destinations, or use default.")
        }
    }

    private static func lockAndCheck(_ tx: DatabaseConnection, _ name: String, precondition: VersionPrecondition?) async throws {
        let current = try await tx.query("SELECT version FROM destinations WHERE name = \(name) FOR UPDATE").decode(Int64.self).first
        guard let current else { throw GatewayError.destinationNotFound(name) }
        if let precondition, !precondition.allows(current) { throw GatewayError.versionMismatch(current: current, of: "destination") }
    }

    /// The endpoint as columns.
    private struct Row {
        var kind: String
        var socketPath: String?
        var host: String?
        var port: Int?
        var serverName: String?
        var caPEM: String?

        init(_ endpoint: Destination.Endpoint) {
            switch endpoint {
            case .socket(let path):
                self.init(kind: "socket", socketPath: path)
            case .network(let host, let port, let serverName, let caPEM):
                self.init(kind: "network", host: host, port: port, serverName: serverName, caPEM: caPEM)
            }
        }

        init(kind: String, socketPath: String? = nil, host: String? = nil, port: Int? = nil, serverName: String? = nil, caPEM: String? = nil) {
            self.kind = kind
            self.socketPath = socketPath
            self.host = host
            self.port = port
            self.serverName = serverName
            self.caPEM = caPEM
        }
    }
}

extension Destination {
    init(row: PostgresRow) throws {
        let r = row.makeRandomAccess()
        let kind = try r["kind"].decode(String.self)
        let endpoint: Endpoint
        switch kind {
        case "socket":
            endpoint = .socket(path: try r["socket_path"].decode(String.self))
        case "network":
            endpoint = .network(
                host: try r["host"].decode(String.self), port: Int(try r["port"].decode(Int32.self)),
                serverName: try r["server_name"].decode(String?.self), caPEM: try r["ca_pem"].decode(String?.self))
        default:
            throw GatewayError(.internal, code: "corrupt_row", "A destination row has an unknown kind.")
        }
        self.init(
            name: try r["name"].decode(String.self), endpoint: endpoint, hasConnectionKey: try r["has_key"].decode(Bool.self),
            version: try r["version"].decode(Int64.self), createdAt: try r["created_at"].decode(Date.self),
            updatedAt: try r["updated_at"].decode(Date.self))
    }
}
