import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import PostgresStorage
import Testing

/// The stored UTMStack destinations, against PostgreSQL (docs/destinations.md).
@Suite(.timeLimit(.minutes(2))) struct DestinationsTests {
    static let policy = DestinationPolicy(socketDirectories: ["/utmstack", "/run"])

    func withStores(_ body: @escaping @Sendable (PostgresDestinationStore, PostgresTenantStore, Database) async throws -> Void) async throws {
        let db = try await TestDatabase.create("destinations")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        let sealer = CredentialSealer(keyRing: .random())
        try await TestDatabase.withClient(db) { database in
            try await body(
                PostgresDestinationStore(database: database, sealer: sealer, policy: Self.policy, logger: quietLogger),
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
            let loaded = try await destinations.forwardingDestinations()
            #expect(loaded.map(\.name) == ["eu-west", "local"])
            #expect(try loaded[0].settings.get().connectionKey == Self.key && loaded[0].settings.get().endpoint == Self.network.endpoint)
            #expect(try loaded[1].settings.get().connectionKey == nil)

            // At rest the key is ciphertext; copied to another destination's row, it does not open.
            let box = try #require(try await database.query("SELECT connection_key_box FROM destinations WHERE name = 'eu-west'").decode(Data.self).first)
            #expect(box.range(of: Data(Self.key.unredacted.utf8)) == nil)
            _ = try await destinations.create("us-east", Self.network)
            try await database.query(
                "UPDATE destinations SET connection_key_box = (SELECT connection_key_box FROM destinations WHERE name = 'eu-west') WHERE name = 'us-east'")
            // That destination fails alone: the others still load.
            let afterCopy = try await destinations.forwardingDestinations()
            #expect(afterCopy.map(\.name) == ["eu-west", "local", "us-east"])
            #expect((try? afterCopy[0].settings.get()) != nil && (try? afterCopy[1].settings.get()) != nil)
            guard case .failure(let error) = afterCopy[2].settings else { Issue.record("the copied key opened"); return }
            #expect(error.code == "credential_unreadable")
            #expect(!"\(error)".contains(Self.key.unredacted))
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

            // A PATCH keeps what it does not name; the key is bound to the endpoint: a new port needs it again.
            let keyless = await #expect(throws: GatewayError.self) {
                try await destinations.update("eu", DestinationChanges(port: 9443), precondition: VersionPrecondition([eu.version]))
            }
            #expect(keyless?.code == "connection_key_required" && keyless?.kind == .invalidInput)
            let moved = try await destinations.update(
                "eu", DestinationChanges(port: 9443, connectionKey: Self.key), precondition: VersionPrecondition([eu.version]))
            #expect(moved.version == 2 && moved.endpoint == .network(host: "utmstack.example.net", port: 9443, serverName: nil, caPEM: nil))
            #expect(try await destinations.forwardingDestinations().first?.settings.get().connectionKey == Self.key)
            // Naming the current endpoint again changes nothing it is bound to: the key stays.
            let same = try await destinations.update("eu", DestinationChanges(host: "utmstack.example.net"), precondition: nil)
            #expect(same.version == 3 && same.hasConnectionKey)
            // To a socket the key goes; back to the network path, a key is needed again.
            let replaced = try await destinations.update(
                "eu", DestinationChanges(kind: .socket, socketPath: "/run/utmstack.sock"), precondition: VersionPrecondition([same.version]))
            #expect(replaced.version == 4 && !replaced.hasConnectionKey && replaced.endpoint == .socket(path: "/run/utmstack.sock"))
            let wrongKind = await #expect(throws: GatewayError.self) { try await destinations.update("eu", DestinationChanges(port: 1), precondition: nil) }
            #expect(wrongKind?.code == "invalid_field" && wrongKind?.message.hasPrefix("port:") == true, "a socket takes no port")
            let backKeyless = await #expect(throws: GatewayError.self) {
                try await destinations.update("eu", DestinationChanges(kind: .network, host: "utm", port: 9000), precondition: nil)
            }
            #expect(backKeyless?.code == "connection_key_required" && backKeyless?.message.hasPrefix("connectionKey") == true)
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

    /// Every create and every change takes a new generation, never reused: a destination deleted and created again
    /// under its name (version 1 again) is told apart from the old one.
    @Test func generationsAreNeverReused() async throws {
        try await withStores { destinations, _, _ in
            @Sendable func generation(_ name: String) async throws -> Int64 {
                try #require(try await destinations.forwardingDestinations().first { $0.name == name }).generation
            }
            let first = try await destinations.create("eu", Self.network)
            let created = try await generation("eu")
            _ = try await destinations.update("eu", DestinationChanges(port: 9443, connectionKey: Self.key), precondition: nil)
            let changed = try await generation("eu")
            try await destinations.delete("eu", precondition: nil)
            let again = try await destinations.create("eu", Self.network)
            let recreated = try await generation("eu")
            #expect(first.version == again.version, "the version starts again")
            #expect(Set([created, changed, recreated]).count == 3 && created < changed && changed < recreated)
        }
    }

    /// The tenants' change stamp moves with every destination's new generation (a change, a delete, a create), so
    /// a replica's cached tenant reads, which carry their destination's generation, are read again: a poll sees the
    /// change at its next blob and stops sending to the destination as it was (Collector's `rerouted`).
    @Test func theChangeStampMovesWithTheDestinations() async throws {
        try await withStores { destinations, tenants, _ in
            var stamps = [try await tenants.changeStamp()]
            _ = try await destinations.create("eu", Self.network)
            stamps.append(try await tenants.changeStamp())
            _ = try await destinations.update("eu", DestinationChanges(port: 9443, connectionKey: Self.key), precondition: nil)
            stamps.append(try await tenants.changeStamp())
            try await destinations.delete("eu", precondition: nil)
            stamps.append(try await tenants.changeStamp())
            _ = try await destinations.create("eu", Self.network)
            stamps.append(try await tenants.changeStamp())
            // (Deleting the only destination returns the registry to where it started: so does the stamp.)
            #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 != $1 }, "every change moves the stamp: \(stamps)")
            #expect(stamps[1] != stamps[4], "a destination created again is not the one deleted")
            #expect(try await tenants.changeStamp() == stamps.last, "and nothing else does")
        }
    }

    /// What the store refuses at write time, each a 400 with a stable code: a CA that is no certificate, a socket
    /// outside the allowed directories, a name or path with a NUL (PostgreSQL cannot store one: it was a 500).
    @Test func endpointsAreCheckedWhenWritten() async throws {
        let pki = try TestPKI()
        try await withStores { destinations, _, _ in
            let withCA = try await destinations.create("ca", DestinationSettings(
                endpoint: .network(host: "utmstack.test", port: 9000, serverName: nil, caPEM: pki.caPEM), connectionKey: Self.key))
            #expect(withCA.hasConnectionKey)
            let cases: [(DestinationSettings, String)] = [
                (DestinationSettings(endpoint: .network(host: "u", port: 1, serverName: nil, caPEM: "hello"), connectionKey: Self.key), "invalid_ca_pem"),
                (DestinationSettings(endpoint: .network(host: "u", port: 1, serverName: nil, caPEM: pki.serverKeyPEM), connectionKey: Self.key), "invalid_ca_pem"),
                (DestinationSettings(endpoint: .socket(path: "/var/run/docker.sock")), "socket_path_not_allowed"),
                (DestinationSettings(endpoint: .socket(path: "/utmstack/../etc/engine.sock")), "socket_path_not_allowed"),
                (DestinationSettings(endpoint: .socket(path: "/utmstack/a\u{0}b.sock")), "invalid_field"),
            ]
            for (settings, code) in cases {
                let error = await #expect(throws: GatewayError.self) { try await destinations.create("eu", settings) }
                #expect(error?.code == code && error?.kind == .invalidInput, "\(String(describing: error))")
                #expect(error.map { !$0.message.contains("PRIVATE") } ?? false)
            }
            let badCA = await #expect(throws: GatewayError.self) {
                try await destinations.update("ca", DestinationChanges(caPEM: "x", connectionKey: Self.key), precondition: nil)
            }
            #expect(badCA?.code == "invalid_ca_pem")
            for name in ["a\u{0}b", String(repeating: "é", count: 40)] {
                for operation in ["get", "tenants", "delete", "update"] {
                    let error = await #expect(throws: GatewayError.self, "\(operation)") {
                        switch operation {
                        case "get": _ = try await destinations.get(name)
                        case "tenants": _ = try await destinations.tenants(of: name)
                        case "delete": try await destinations.delete(name, precondition: nil)
                        default: _ = try await destinations.update(name, DestinationChanges(port: 1), precondition: nil)
                        }
                    }
                    #expect(error?.code == "invalid_field" && error?.kind == .invalidInput, "\(operation): \(String(describing: error))")
                }
            }
        }
    }

    /// A destination stored before the policy was narrowed is refused when forwarders load it, alone.
    @Test func aDestinationOutsideThePolicyFailsAloneWhenLoaded() async throws {
        try await withStores { destinations, _, database in
            _ = try await destinations.create("kept", DestinationSettings(endpoint: .socket(path: "/utmstack/engine.sock")))
            _ = try await destinations.create("narrowed", DestinationSettings(endpoint: .socket(path: "/run/engine.sock")))
            let narrower = PostgresDestinationStore(
                database: database, sealer: CredentialSealer(keyRing: .random()), policy: DestinationPolicy(socketDirectories: ["/utmstack"]),
                logger: quietLogger)
            let loaded = try await narrower.forwardingDestinations()
            #expect(try loaded.first { $0.name == "kept" }?.settings.get().endpoint == .socket(path: "/utmstack/engine.sock"))
            let narrowed = try #require(loaded.first { $0.name == "narrowed" })
            guard case .failure(let error) = narrowed.settings else {
                Issue.record("a socket outside the policy loaded: \(narrowed.settings)")
                return
            }
            #expect(error.code == "socket_path_not_allowed")
        }
    }
}
