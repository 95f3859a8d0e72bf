import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import PostgresStorage
import Testing

/// The stored UTMStack destinations, against PostgreSQL (docs/destinations.md).
@Suite(.timeLimit(.minutes(2))) struct DestinationsTests {
    func withStores(_ body: @escaping @Sendable (PostgresDestinationStore, PostgresTenantStore, Database) async throws -> Void) async throws {
        let db = try await TestDatabase.create("destinations")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        let sealer = CredentialSealer(keyRing: .random())
        try await TestDatabase.withClient(db) { database in
            try await body(
                PostgresDestinationStore(database: database, sealer: sealer, logger: quietLogger),
                PostgresTenantStore(database: database, sealer: sealer, logger: quietLogger), database)
        }
    }

    static let key = Secret("federation-key-0123456789")
    static let network = DestinationSettings(
        endpoint: .network(host: "utmstack.example.net", port: 9000, serverName: nil, caPEM: nil), connectionKey: key)

    @Test func destinationsRoundTripAndTheirKeyIsSealedToTheirName() async throws {
        try await withStores { destinations, _, database in
            let eu = try await destinations.create("eu-west", Self.network)
            #expect(eu.endpoint == Self.network.endpoint && eu.hasConnectionKey && eu.version == 1)
            let local = try await destinations.create("local", DestinationSettings(endpoint: .socket(path: "/utmstack/engine.sock")))
            #expect(!local.hasConnectionKey)
            #expect(try await destinations.list().map(\.name) == ["eu-west", "local"])
            #expect(try await destinations.connectionKey(of: "eu-west") == Self.key)
            #expect(try await destinations.connectionKey(of: "local") == nil)

            // At rest the key is ciphertext; copied to another destination's row, it does not open.
            let box = try #require(try await database.query("SELECT connection_key_box FROM destinations WHERE name = 'eu-west'").decode(Data.self).first)
            #expect(box.range(of: Data(Self.key.unredacted.utf8)) == nil)
            _ = try await destinations.create("us-east", Self.network)
            try await database.query(
                "UPDATE destinations SET connection_key_box = (SELECT connection_key_box FROM destinations WHERE name = 'eu-west') WHERE name = 'us-east'")
            let error = await #expect(throws: GatewayError.self) { try await destinations.connectionKey(of: "us-east") }
            #expect(error?.code == "credential_unreadable")
            #expect(error.map { !"\($0)".contains(Self.key.unredacted) } ?? false)
        }
    }

    @Test func badSettingsAndNamesAreRefusedWithTheirField() async throws {
        try await withStores { destinations, _, _ in
            for name in ["default", "EU", "-eu", "eu-", "", String(repeating: "a", count: 64), "eu west"] {
                let error = await #expect(throws: GatewayError.self, "\(name)") { try await destinations.create(name, Self.network) }
                #expect(error?.code == "invalid_field" && error?.message.hasPrefix("name:") == true, "\(name): \(String(describing: error))")
            }
            let cases: [(DestinationSettings, String)] = [
                (DestinationSettings(endpoint: .network(host: "utm", port: 9000, serverName: nil, caPEM: nil)), "connectionKey"),
                (DestinationSettings(endpoint: .network(host: "utm", port: 0, serverName: nil, caPEM: nil), connectionKey: Self.key), "port"),
                (DestinationSettings(endpoint: .socket(path: "engine.sock")), "socketPath"),
                (DestinationSettings(endpoint: .socket(path: "/engine.sock"), connectionKey: Self.key), "connectionKey"),
            ]
            for (settings, field) in cases {
                let error = await #expect(throws: GatewayError.self) { try await destinations.create("eu", settings) }
                #expect(error?.message.hasPrefix("\(field):") == true, "\(String(describing: error))")
            }
            _ = try await destinations.create("eu", Self.network)
            let duplicate = await #expect(throws: GatewayError.self) { try await destinations.create("eu", Self.network) }
            #expect(duplicate?.code == "destination_exists")
        }
    }

    @Test func aDestinationInUseIsNotDeletedAndVersionsGuardWrites() async throws {
        try await withStores { destinations, tenants, database in
            let eu = try await destinations.create("eu", Self.network)
            let tenant = try await tenants.create(newTenant())
            try await database.query("UPDATE tenants SET destination = 'eu' WHERE id = \(tenant.id.uuid)")
            #expect(try await destinations.tenants(of: "eu") == [tenant.id])
            let inUse = await #expect(throws: GatewayError.self) { try await destinations.delete("eu", precondition: nil) }
            #expect(inUse?.code == "destination_in_use")

            // A PATCH keeps what it does not name: the port changes, the key stays.
            let moved = try await destinations.update("eu", DestinationChanges(port: 9443), precondition: VersionPrecondition([eu.version]))
            #expect(moved.version == 2 && moved.endpoint == .network(host: "utmstack.example.net", port: 9443, serverName: nil, caPEM: nil))
            #expect(try await destinations.connectionKey(of: "eu") == Self.key)
            // To a socket the key goes; back to the network path, a key is needed again.
            let replaced = try await destinations.update(
                "eu", DestinationChanges(kind: .socket, socketPath: "/run/utmstack.sock"), precondition: VersionPrecondition([moved.version]))
            #expect(replaced.version == 3 && !replaced.hasConnectionKey && replaced.endpoint == .socket(path: "/run/utmstack.sock"))
            let wrongKind = await #expect(throws: GatewayError.self) { try await destinations.update("eu", DestinationChanges(port: 1), precondition: nil) }
            #expect(wrongKind?.code == "invalid_field" && wrongKind?.message.hasPrefix("port:") == true, "a socket takes no port")
            let keyless = await #expect(throws: GatewayError.self) {
                try await destinations.update("eu", DestinationChanges(kind: .network, host: "utm", port: 9000), precondition: nil)
            }
            #expect(keyless?.code == "missing_field" && keyless?.message.hasPrefix("connectionKey") == true)
            let stale = await #expect(throws: GatewayError.self) {
                try await destinations.update("eu", DestinationChanges(port: 1), precondition: VersionPrecondition([eu.version]))
            }
            #expect(stale?.code == "version_mismatch" && stale?.message.contains("destination") == true)

            try await database.query("UPDATE tenants SET destination = 'default' WHERE id = \(tenant.id.uuid)")
            try await destinations.delete("eu", precondition: nil)
            #expect(try await destinations.get("eu") == nil)
            let gone = await #expect(throws: GatewayError.self) { try await destinations.delete("eu", precondition: nil) }
            #expect(gone?.code == "destination_not_found")
        }
    }
}
