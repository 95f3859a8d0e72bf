import Foundation
import NIOHTTP1
import GatewayApp
import Collection
import GatewayCore
import MicrosoftSimulator
import PostgresStorage
import Testing
import UTMStackReceiver

/// `/api/v1/destinations` over the real server (docs/destinations.md, docs/admin-api.md).
@Suite(.timeLimit(.minutes(2))) struct DestinationsAPITests {
    static let network = #"{"name": "eu-west", "kind": "network", "host": "utm.example.net", "port": 9000, "connectionKey": "federation-key-0123456789"}"#

    @Test func createListGetPatchDelete() async throws {
        try await GatewayHarness.run { gw in
            let created = try await gw.request(.POST, "/api/v1/destinations", json: Self.network)
            #expect(created.status == 201)
            #expect(created.headers["ETag"].first == "\"1\"")
            #expect(created.headers["Location"].first == "/api/v1/destinations/eu-west")
            #expect(created.json["source"] as? String == "api" && created.json["hasConnectionKey"] as? Bool == true)
            #expect(created.json["port"] as? Int == 9000)

            let list = try await gw.request(.GET, "/api/v1/destinations")
            let items = try #require(list.json["items"] as? [[String: Any]])
            #expect(items.map { $0["name"] as? String } == ["default", "eu-west"], "default, from the configuration, first")
            #expect(items.first?["source"] as? String == "configuration")

            let patched = try await gw.request(
                .PATCH, "/api/v1/destinations/eu-west", json: #"{"port": 9443, "connectionKey": "federation-key-0123456789"}"#,
                headers: [("If-Match", "\"1\"")])
            #expect(patched.status == 200 && patched.json["port"] as? Int == 9443 && patched.json["version"] as? Int == 2)
            #expect(patched.json["hasConnectionKey"] as? Bool == true)
            let stale = try await gw.request(
                .PATCH, "/api/v1/destinations/eu-west", json: #"{"port": 9000}"#, headers: [("If-Match", "\"1\"")])
            #expect(stale.status == 412 && stale.errorCode == "version_mismatch" && stale.headers["ETag"].first == "\"2\"")

            // Tenants choose a destination when onboarded and by PATCH; one that does not exist is refused.
            let tenant = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(tenantId: UUID().uuidString, ["destination": "eu-west"]))
            #expect(tenant.status == 201 && tenant.json["destination"] as? String == "eu-west")
            let id = try #require(tenant.json["id"] as? String)
            let unknown = try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "nowhere"}"#)
            #expect(unknown.status == 400 && unknown.errorCode == "destination_unknown")
            let unknownAtOnboarding = try await gw.request(
                .POST, "/api/v1/tenants", json: tenantBody(tenantId: UUID().uuidString, ["destination": "nowhere"]))
            #expect(unknownAtOnboarding.status == 400 && unknownAtOnboarding.errorCode == "destination_unknown")
            let got = try await gw.request(.GET, "/api/v1/destinations/eu-west")
            #expect(got.status == 200 && got.json["tenants"] as? [String] == [id] && got.headers["ETag"].first == "\"2\"")
            let inUse = try await gw.request(.DELETE, "/api/v1/destinations/eu-west")
            #expect(inUse.status == 409 && inUse.errorCode == "destination_in_use")

            for response in [created, list, patched, got] {
                #expect(!response.body.contains("federation-key"), "the key is never returned")
            }
            let moved = try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "default"}"#)
            #expect(moved.status == 200 && moved.json["destination"] as? String == "default")
            #expect(try await gw.request(.DELETE, "/api/v1/destinations/eu-west").status == 204)
            let gone = try await gw.request(.GET, "/api/v1/destinations/eu-west")
            #expect(gone.status == 404 && gone.errorCode == "destination_not_found")
        }
    }

    /// A tenant on destination eu is collected there; moved to default (PATCH), its later records go to default:
    /// between the two, every record once (the checkpoint and the de-duplication state are the tenant's).
    @Test func aTenantMovedToAnotherDestinationSendsItsLaterRecordsThere() async throws {
        let simulated = SimulatorConfiguration.steady(tenants: 1, seed: 31, history: 65.0 / 3600, interval: 2, records: 3, live: true)
        // A backfill well beyond the 65 s of history: a first poll delayed by a loaded machine still lists its start.
        let settings = CollectionSettings(
            pollInterval: .milliseconds(500), backfill: 600, trailingRelist: 0, leaseTTL: 20, tick: .milliseconds(200))
        let socketDefault = temporarySocketPath()
        let socketEU = siblingSocketPath(of: socketDefault, "eu")
        let atEU = ReceivedLogs(keepLogs: true)
        let atDefault = ReceivedLogs(keepLogs: true)
        try await withSimulator(simulated) { simulator, url in
            try await withReceiver(path: socketEU, received: atEU) {
                try await withReceiver(path: socketDefault, received: atDefault) {
                    try await GatewayHarness.run(microsoft: url, utmstackSocket: socketDefault, collection: settings) { gw in
                        let created = try await gw.request(
                            .POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "\#(socketEU)"}"#)
                        try #require(created.status == 201)
                        let tenant = try #require(simulator.configuration.tenants.first)
                        let onboarded = try await gw.request(
                            .POST, "/api/v1/tenants",
                            json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                                "clientId": tenant.clientId.uuidString, "name": tenant.name, "destination": "eu",
                            ]))
                        let id = try #require(onboarded.json["id"] as? String)
                        let atFirst = try await eventually(timeout: .seconds(60)) {
                            Set(atEU.recordIDs).isSuperset(of: expectedRecordIDs(simulator, now: Date() - 62))
                        }
                        let missing = expectedRecordIDs(simulator, now: Date() - 62).subtracting(atEU.recordIDs)
                        try #require(atFirst, "collected to eu: \(missing.count) missing, \(atEU.total) received, \(atDefault.total) at default")
                        #expect(atDefault.total == 0, "nothing reaches default while the tenant names eu")
                        let destination = try await gw.request(.GET, "/api/v1/destinations/eu").json
                        #expect(destination["tenants"] as? [String] == [id])
                        #expect((destination["state"] as? [String: Any])?["connection"] as? String == "connected")
                        #expect(try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "default"}"#).status == 200)
                        let moved = try await eventually(timeout: .seconds(60)) { atDefault.total > 0 }
                        #expect(moved, "later records go to default")
                        let complete = try await eventually(timeout: .seconds(60)) {
                            Set(atEU.recordIDs + atDefault.recordIDs).isSuperset(of: expectedRecordIDs(simulator, now: Date() - 62))
                        }
                        #expect(complete, "nothing lost in the move")
                        let euCount = atEU.total
                        try await Task.sleep(for: .seconds(3))
                        #expect(atEU.total == euCount, "nothing more reaches eu")
                        let all = atEU.recordIDs + atDefault.recordIDs
                        #expect(all.count == Set(all).count, "nothing twice across the move: \(atEU.duplicateReport) \(atDefault.duplicateReport)")
                        // No tenant names it any more: it can be deleted (its forwarder drains and stops).
                        #expect(try await gw.request(.DELETE, "/api/v1/destinations/eu").status == 204)
                    }
                }
            }
        }
    }

    @Test func defaultIsTheConfigurationsAndBadInputIsAClear4xx() async throws {
        try await GatewayHarness.run { gw in
            let configured = try await gw.request(.GET, "/api/v1/destinations/default")
            #expect(configured.status == 200 && configured.json["source"] as? String == "configuration")
            #expect(configured.json["kind"] as? String == "socket" && configured.json["socketPath"] is String)
            for (method, body) in [(HTTPMethod.PATCH, #"{"port": 1}"#), (.DELETE, nil)] {
                let refused = try await gw.request(method, "/api/v1/destinations/default", json: body)
                #expect(refused.status == 409 && refused.errorCode == "destination_from_configuration", "\(method)")
            }
            let cases: [(String, String, String)] = [
                (#"{"name": "default", "kind": "socket", "socketPath": "/tmp/o365gw-none/e.sock"}"#, "invalid_field", "name"),
                (#"{"name": "eu", "kind": "network", "host": "utm", "port": 9000}"#, "missing_field", "connectionKey"),
                (#"{"name": "eu", "kind": "network", "host": "utm one", "port": 9000, "connectionKey": "k"}"#, "invalid_field", "host"),
                (#"{"name": "eu", "kind": "socket"}"#, "missing_field", "socketPath"),
                (#"{"name": "eu", "kind": "socket", "socketPath": "/engine.sock", "port": 9000}"#, "unknown_field", "port"),
                (#"{"name": "eu", "kind": "socket", "socketPath": "engine.sock"}"#, "invalid_field", "socketPath"),
            ]
            for (body, code, field) in cases {
                let response = try await gw.request(.POST, "/api/v1/destinations", json: body)
                #expect(response.status == 400 && response.errorCode == code, "\(body): \(response.body)")
                #expect(response.body.contains(field), "\(body): \(response.body)")
            }
            let socket = #"{"name": "eu", "kind": "socket", "socketPath": "/tmp/o365gw-none/e.sock"}"#
            #expect(try await gw.request(.POST, "/api/v1/destinations", json: socket).status == 201)
            let duplicate = try await gw.request(.POST, "/api/v1/destinations", json: socket)
            #expect(duplicate.status == 409 && duplicate.errorCode == "destination_exists")
        }
    }

    /// A stored connection key is bound to where it is sent: a PATCH that points the destination elsewhere (host,
    /// port, server name, CA) without the key is refused, and the destination stays as it was.
    @Test func changingWhereADestinationPointsNeedsTheKeyAgain() async throws {
        let pki = try TestPKI()
        try await GatewayHarness.run { gw in
            #expect(try await gw.request(.POST, "/api/v1/destinations", json: Self.network).status == 201)
            let caPem = try String(data: JSONEncoder().encode(pki.caPEM), encoding: .utf8)!
            for change in [#"{"host": "listener.attacker.example"}"#, #"{"port": 1}"#, #"{"serverName": "other.example"}"#, #"{"caPem": \#(caPem)}"#] {
                let refused = try await gw.request(.PATCH, "/api/v1/destinations/eu-west", json: change)
                #expect(refused.status == 400 && refused.errorCode == "connection_key_required", "\(change): \(refused.body)")
                #expect(refused.errorMessage?.hasPrefix("connectionKey:") == true)
            }
            let unchanged = try await gw.request(.GET, "/api/v1/destinations/eu-west")
            #expect(unchanged.json["host"] as? String == "utm.example.net" && unchanged.json["version"] as? Int == 1)
            // With the key (the caller knows the new UTMStack's), the change is made; a CA that is no certificate is not.
            let moved = try await gw.request(
                .PATCH, "/api/v1/destinations/eu-west", json: #"{"host": "utm2.example.net", "caPem": \#(caPem), "connectionKey": "new-key-0123456789"}"#)
            #expect(moved.status == 200 && moved.json["host"] as? String == "utm2.example.net" && moved.json["version"] as? Int == 2, "\(moved.body)")
            let badCA = try await gw.request(.PATCH, "/api/v1/destinations/eu-west", json: #"{"caPem": "not a certificate", "connectionKey": "k"}"#)
            #expect(badCA.status == 400 && badCA.errorCode == "invalid_ca_pem", "\(badCA.body)")
            let keyOfCA = try String(data: JSONEncoder().encode(pki.serverKeyPEM), encoding: .utf8)!
            let aKey = try await gw.request(
                .POST, "/api/v1/destinations",
                json: #"{"name": "k", "kind": "network", "host": "u", "port": 1, "caPem": \#(keyOfCA), "connectionKey": "k"}"#)
            #expect(aKey.status == 400 && aKey.errorCode == "invalid_ca_pem" && !aKey.body.contains("PRIVATE KEY-----\\n"), "\(aKey.body)")
        }
    }

    /// Sockets only in the allowed directories, hosts only as O365GW_DESTINATION_ALLOWED_HOSTS says; a NUL or an
    /// over-long multi-byte name is a 400, never a 500 (PostgreSQL cannot store a NUL; it counts code points).
    @Test func destinationsPointOnlyWhereTheOperatorAllows() async throws {
        try await GatewayHarness.run(adjust: { configuration in
            configuration.destinationPolicy = DestinationPolicy(
                socketDirectories: ["/tmp/o365gw-none"], allowedHosts: [HostPattern(host: "*.utmstack.example.net", port: 9000)])
        }) { gw in
            let cases: [(String, String)] = [
                (#"{"name": "eu", "kind": "socket", "socketPath": "/var/run/docker.sock"}"#, "socket_path_not_allowed"),
                (#"{"name": "eu", "kind": "socket", "socketPath": "/tmp/o365gw-none/../../run/x.sock"}"#, "socket_path_not_allowed"),
                (#"{"name": "eu", "kind": "network", "host": "127.0.0.1", "port": 5432, "connectionKey": "k"}"#, "host_not_allowed"),
                (#"{"name": "eu", "kind": "network", "host": "eu.utmstack.example.net", "port": 22, "connectionKey": "k"}"#, "host_not_allowed"),
                (#"{"name": "eu", "kind": "socket", "socketPath": "/tmp/o365gw-none/a\u0000b.sock"}"#, "invalid_field"),
                (#"{"name": "\#(String(repeating: "é", count: 40))", "kind": "socket", "socketPath": "/tmp/o365gw-none/e.sock"}"#, "invalid_field"),
            ]
            for (body, code) in cases {
                let response = try await gw.request(.POST, "/api/v1/destinations", json: body)
                #expect(response.status == 400 && response.errorCode == code, "\(body): \(response.body)")
            }
            let allowed = try await gw.request(
                .POST, "/api/v1/destinations",
                json: #"{"name": "eu", "kind": "network", "host": "eu.utmstack.example.net", "port": 9000, "connectionKey": "k"}"#)
            #expect(allowed.status == 201, "\(allowed.body)")
            let moved = try await gw.request(.PATCH, "/api/v1/destinations/eu", json: #"{"host": "internal.example.net", "connectionKey": "k"}"#)
            #expect(moved.status == 400 && moved.errorCode == "host_not_allowed", "\(moved.body)")
            // A NUL or a long multi-byte name in the URL: a 400 for every method, not a 500.
            for name in ["a%00b", String(repeating: "%C3%A9", count: 40)] {
                for method in [HTTPMethod.GET, .PATCH, .DELETE] {
                    let response = try await gw.request(method, "/api/v1/destinations/\(name)", json: method == .PATCH ? #"{"port": 1}"# : nil)
                    #expect(response.status == 400 && response.errorCode == "invalid_field", "\(method) \(name): \(response.status) \(response.body)")
                }
            }
            // The tenants' name is counted as PostgreSQL counts it (code points): 150 "é" written with a combining
            // accent are 300 code points, over the 200 of its CHECK.
            let longName = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(["name": String(repeating: "e\u{301}", count: 150)]))
            #expect(longName.status == 400 && longName.errorCode == "invalid_field", "\(longName.body)")
        }
    }

    /// A destination deleted and created again under its name with another endpoint, between two refreshes of the
    /// router (its version is 1 again): once its tenant names it again, the tenant's records go only to the new
    /// endpoint, never to the old one (not even before the router's next periodic refresh).
    @Test func aDestinationDeletedAndCreatedAgainIsANewDestination() async throws {
        let simulated = SimulatorConfiguration.steady(tenants: 1, seed: 37, history: 65.0 / 3600, interval: 2, records: 3, live: true)
        let settings = CollectionSettings(
            pollInterval: .milliseconds(500), backfill: 600, trailingRelist: 0, leaseTTL: 20, tick: .milliseconds(200))
        let socketDefault = temporarySocketPath()
        let socketOld = siblingSocketPath(of: socketDefault, "old")
        let socketNew = siblingSocketPath(of: socketDefault, "new")
        let atOld = ReceivedLogs(keepLogs: true)
        let atNew = ReceivedLogs(keepLogs: true)
        let atDefault = ReceivedLogs(keepLogs: true)
        try await withSimulator(simulated) { simulator, url in
            try await withReceiver(path: socketOld, received: atOld) {
                try await withReceiver(path: socketNew, received: atNew) {
                    try await withReceiver(path: socketDefault, received: atDefault) {
                        try await GatewayHarness.run(microsoft: url, utmstackSocket: socketDefault, collection: settings) { gw in
                            #expect(try await gw.request(
                                .POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "\#(socketOld)"}"#).status == 201)
                            let tenant = try #require(simulator.configuration.tenants.first)
                            let onboarded = try await gw.request(
                                .POST, "/api/v1/tenants",
                                json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                                    "clientId": tenant.clientId.uuidString, "name": tenant.name, "destination": "eu",
                                ]))
                            let id = try #require(onboarded.json["id"] as? String)
                            try #require(try await eventually(timeout: .seconds(60)) { atOld.total > 0 }, "collected to the old endpoint first")

                            // Move the tenant away (its polls under way finish on eu), then, within far less than
                            // the router's refresh interval (5 s): delete, create again elsewhere, move back.
                            #expect(try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "default"}"#).status == 200)
                            try #require(try await eventually(timeout: .seconds(30)) { atDefault.total > 0 }, "moved to default")
                            try await Task.sleep(for: .seconds(2))
                            let oldCount = atOld.total
                            #expect(try await gw.request(.DELETE, "/api/v1/destinations/eu").status == 204)
                            let recreated = try await gw.request(
                                .POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "\#(socketNew)"}"#)
                            #expect(recreated.status == 201 && recreated.headers["ETag"].first == "\"1\"", "its version starts again")
                            #expect(try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "eu"}"#).status == 200)

                            // From then on the records reach the new endpoint, and the old one gets nothing more.
                            let moved = try await eventually(timeout: .seconds(30)) { atNew.total > 0 }
                            #expect(moved, "records reach the new endpoint (old \(atOld.total), default \(atDefault.total))")
                            let before = atNew.total
                            let grew = try await eventually(timeout: .seconds(30)) { atNew.total > before + 5 }
                            #expect(grew, "later records keep reaching the new endpoint")
                            #expect(atOld.total == oldCount, "nothing reaches the old endpoint after the change")
                        }
                    }
                }
            }
        }
    }
}
