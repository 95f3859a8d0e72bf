import Foundation
import NIOHTTP1
import GatewayApp
import Collection
import GatewayCore
import MicrosoftSimulator
import PostgresStorage
import Testing

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

    /// Until each destination has its forwarder, a tenant routed elsewhere is not collected (its records must
    /// never reach another UTMStack); its status says so, and routed back to default it is collected.
    @Test func aTenantRoutedToADestinationWithoutForwarderIsNotCollected() async throws {
        var quiet = SimulatorConfiguration.generated(tenants: 1, seed: 31)
        quiet.historyHours = 0  // nothing to forward: a poll routed to default then succeeds without a receiver
        quiet.live = false
        try await withSimulator(quiet) { simulator, url in
            try await GatewayHarness.run(microsoft: url, collection: CollectionSettings(pollInterval: .seconds(1))) { gw in
                #expect(try await gw.request(.POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "/e.sock"}"#).status == 201)
                let tenant = try #require(simulator.configuration.tenants.first)
                let created = try await gw.request(
                    .POST, "/api/v1/tenants",
                    json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                        "clientId": tenant.clientId.uuidString, "name": tenant.name, "destination": "eu", "contentTypes": ["Audit.General"],
                    ]))
                let id = try #require(created.json["id"] as? String)
                @Sendable func lastError() async throws -> String? {
                    let status = try await gw.request(.GET, "/api/v1/tenants/\(id)").json["status"] as? [[String: Any]]
                    return (status?.first?["lastError"] as? [String: Any])?["code"] as? String
                }
                #expect(try await eventually { try await lastError() == "destination_unavailable" })
                #expect(try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"destination": "default"}"#).status == 200)
                #expect(try await eventually { try await lastError() != "destination_unavailable" }, "collected again once routed to default")
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
