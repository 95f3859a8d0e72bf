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
                .PATCH, "/api/v1/destinations/eu-west", json: #"{"port": 9443}"#, headers: [("If-Match", "\"1\"")])
            #expect(patched.status == 200 && patched.json["port"] as? Int == 9443 && patched.json["version"] as? Int == 2)
            #expect(patched.json["hasConnectionKey"] as? Bool == true, "the key stays unless given")
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
        let socketEU = temporarySocketPath()
        let socketDefault = temporarySocketPath()
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
                (#"{"name": "default", "kind": "socket", "socketPath": "/engine.sock"}"#, "invalid_field", "name"),
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
            #expect(try await gw.request(.POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "/e.sock"}"#).status == 201)
            let duplicate = try await gw.request(.POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "/e.sock"}"#)
            #expect(duplicate.status == 409 && duplicate.errorCode == "destination_exists")
        }
    }
}
