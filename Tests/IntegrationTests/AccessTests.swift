import AdminAPI
import CredentialCrypto
import Foundation
import GatewayCore
import Logging
import PostgresNIO
import PostgresStorage
import Prometheus
import Testing
import Yams

/// Access is attached to the operations, not to path strings: every operation of openapi.yaml, asked without a token
/// through any spelling of its path, is refused (401), not found (404) or not allowed there (405), never served; and an operation is public
/// only when it is listed as public.
@Suite(.timeLimit(.minutes(3))) struct AccessTests {
    /// One operation of openapi.yaml.
    struct Operation: CustomStringConvertible {
        var id: String
        var method: String
        var path: String
        var isPublic: Bool
        var hasBody: Bool
        var description: String { "\(id) (\(method) \(path))" }
    }

    static func documentedOperations() throws -> [Operation] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/AdminAPI/openapi.yaml")
        let document = try #require(try Yams.load(yaml: String(contentsOf: file, encoding: .utf8)) as? [String: Any])
        let global = document["security"] as? [Any] ?? []
        let paths = try #require(document["paths"] as? [String: Any])
        var operations: [Operation] = []
        for (path, item) in paths {
            for (method, value) in try #require(item as? [String: Any]) {
                guard let operation = value as? [String: Any], let id = operation["operationId"] as? String else { continue }
                let security = operation["security"] as? [Any] ?? global
                operations.append(Operation(
                    id: id, method: method.uppercased(), path: path, isPublic: security.isEmpty,
                    hasBody: operation["requestBody"] != nil))
            }
        }
        return operations.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

    /// The document's public operations are exactly the ones the gateway serves without a token, none takes a body,
    /// and the document requires the bearer token by default: a new operation needs a token unless both say not.
    @Test func publicOperationsAreListedAndAgreeWithTheDocument() throws {
        let operations = try Self.documentedOperations()
        #expect(operations.count >= 20)
        #expect(Set(operations.filter(\.isPublic).map(\.id)) == AccessPolicy.publicOperations)
        #expect(operations.filter { $0.isPublic && $0.hasBody }.isEmpty, "a public operation never takes a body")
        for operation in operations {
            #expect(AccessPolicy.requirement(of: operation.id) == (operation.isPublic ? .anyone : .authenticated), "\(operation)")
        }
        #expect(AccessPolicy.requirement(of: "someOperationAddedTomorrow") == .authenticated, "deny by default")
    }

    /// The router serves the document's operations and nothing else: a route added beside the document would escape
    /// both the document's security declaration and these tests.
    @Test func everyRouteOfTheRouterIsADocumentedOperation() throws {
        struct Ready: ReadinessCheck { func notReadyReason() async -> String? { nil } }
        let client = PostgresClient(configuration: .init(host: "127.0.0.1", port: 1, username: "none", password: nil, database: nil, tls: .disable))
        let store = PostgresTenantStore(
            database: Database(client: client, timeout: .seconds(1), logger: quietLogger), sealer: CredentialSealer(keyRing: .random()),
            logger: quietLogger)
        let router = try AdminRouter.build(
            store: store, readiness: Ready(), validator: nil, adminToken: Secret("access-test-token-0123456789"),
            metrics: PrometheusCollectorRegistry(), logger: quietLogger)
        let documented = Set(try Self.documentedOperations().map { "\($0.method) \($0.path)" })
        let served = router.routes.map { route in
            let path = "/" + "\(route.path)".split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
                .joined(separator: "/")
            return "\(route.method) \(path)"
        }
        #expect(served.count >= 20)
        for route in served {
            // HEAD is answered wherever GET is (the router generates it); the document lists it for the probes only.
            let asGet = route.hasPrefix("HEAD ") ? "GET " + route.dropFirst(5) : route
            #expect(documented.contains(route) || documented.contains(asGet), "\(route) is served but not in openapi.yaml")
        }
    }

    /// Ways of writing a path that a router or a proxy may take for the same route.
    static func spellings(of path: String) -> [String] {
        let trimmed = String(path.dropFirst())  // "api/v1/..."
        var segments = trimmed.split(separator: "/").map(String.init)
        var spellings = [
            path, "/" + path, path.replacingOccurrences(of: "/api/", with: "/api//"), path + "/", "/." + path,
            path.replacingOccurrences(of: "/api/v1/", with: "/api/v1/../v1/"),
            path.replacingOccurrences(of: "/api/v1/", with: "/api/./v1/"),
            "/%61" + trimmed.dropFirst(), "/" + trimmed.replacingOccurrences(of: "/", with: "%2F"),
            path.replacingOccurrences(of: "/api/v1/", with: "/api%2Fv1/"),
            path.uppercased(), path.replacingOccurrences(of: "/api/", with: "/Api/"), path + "?x=1", path + ";x=1",
            path + "%2F", path + "/.",
        ]
        if segments.count > 2 {
            let third = segments[2]
            segments[2] = String(format: "%%%02X", third.utf8.first!) + third.dropFirst()
            spellings.append("/" + segments.joined(separator: "/"))
        }
        return spellings
    }

    /// Every protected operation of the document, through every spelling, without a token (and with a body when it
    /// takes one): 401, 404 or 405, never a 2xx, and nothing changed. The resources named exist, so an operation reached
    /// without a token would answer 2xx (checked with the token for each GET).
    @Test func noSpellingOfAPathReachesAnOperationWithoutAToken() async throws {
        try await GatewayHarness.run { gw in
            let created = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody())
            let tenant = try #require(created.json["id"] as? String)
            #expect(try await gw.request(
                .POST, "/api/v1/destinations",
                json: #"{"name": "eu", "kind": "network", "host": "utm.example.net", "port": 9000, "connectionKey": "federation-key-0123456789"}"#
            ).status == 201)
            try await TestDatabase.withClient(gw.database) { database in
                try await PostgresDeadLetterStore(database: database, logger: quietLogger).setAside(DeadLetter(
                    tenant: TenantID(tenant), contentType: .exchange, contentID: "c", logID: "l",
                    recordID: "r", reason: "test", detail: "test", message: [1, 2, 3]))
            }
            let deadLetter = try #require(
                ((try await gw.request(.GET, "/api/v1/dead-letters").json["items"] as? [[String: Any]])?.first?["id"]) as? String)
            let port = try #require(URL(string: gw.baseURL)?.port)
            let bodies: [String: String] = [
                "createTenant": tenantBody(), "updateTenant": #"{"enabled": false}"#,
                "rotateTenantSecret": #"{"clientSecret": "Rotated~secret.value_0123456789abcdefgh"}"#,
                "createDestination": #"{"name": "us", "kind": "network", "host": "utm.example.org", "port": 9000, "connectionKey": "federation-key-0123456789"}"#,
                "updateDestination": #"{"port": 9001, "connectionKey": "federation-key-0123456789"}"#,
            ]
            var attempts = 0
            for operation in try Self.documentedOperations() where !operation.isPublic {
                let path = operation.path.replacingOccurrences(of: "{id}", with: operation.path.contains("dead-letters") ? "\(deadLetter)" : tenant)
                    .replacingOccurrences(of: "{name}", with: "eu")
                if operation.method == "GET" {
                    let answer = try await RawHTTP.send(
                        port: port, method: "GET", target: path, headers: [("Authorization", "Bearer \(gw.token.unredacted)")])
                    #expect((200..<300).contains(answer.status), "with the token, \(operation) answers \(answer.status)")
                }
                for target in Self.spellings(of: path) {
                    var headers: [(String, String)] = []
                    var body: String?
                    if operation.hasBody {
                        headers.append(("Content-Type", "application/json"))
                        body = bodies[operation.id] ?? "{}"
                    }
                    for method in operation.method == "GET" ? ["GET", "HEAD"] : [operation.method] {
                        let answer = try await RawHTTP.send(port: port, method: method, target: target, headers: headers, body: body)
                        attempts += 1
                        // 405: the spelling names another route (`/api/v1/tenants/.` is a tenant named ".") that
                        // does not take this method; refused before any operation too.
                        #expect([401, 404, 405].contains(answer.status), "\(method) \(target) without a token answered \(answer.status)")
                    }
                }
            }
            #expect(attempts > 200)
            // Nothing changed: the tenant is still enabled at version 1, both destinations are as created.
            let after = try await gw.request(.GET, "/api/v1/tenants/\(tenant)")
            #expect(after.status == 200 && after.json["version"] as? Int == 1 && after.json["enabled"] as? Bool == true)
            #expect((try await gw.request(.GET, "/api/v1/tenants").json["items"] as? [Any])?.count == 1)
            #expect(try await gw.request(.GET, "/api/v1/destinations/eu").json["port"] as? Int == 9000)
            #expect(try await gw.request(.GET, "/api/v1/destinations/us").status == 404)
            #expect(try await gw.request(.GET, "/api/v1/dead-letters/\(deadLetter)").status == 200)
        }
    }

    /// The public operations answer without a token; a body sent to them, or to a protected operation without a
    /// token, is refused before it is read.
    @Test func publicOperationsAnswerAndBodiesWithoutATokenAreRefusedUnread() async throws {
        try await GatewayHarness.run { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            for operation in try Self.documentedOperations() where operation.isPublic && operation.method == "GET" {
                let answer = try await RawHTTP.send(port: port, method: "GET", target: operation.path)
                #expect([200, 503].contains(answer.status), "\(operation) answers without a token")
            }
            // The body is announced but never sent: answered at once means it was not waited for.
            let announced = try await RawHTTP.send(
                port: port, method: "POST", target: "/api/v1/tenants",
                headers: [("Content-Type", "application/json"), ("Content-Length", "1000")], timeout: .seconds(5))
            #expect(announced.status == 401 && announced.text.contains("missing_token"))
            let chunked = try await RawHTTP.send(
                port: port, method: "PATCH", target: "/api/v1/tenants/x",
                headers: [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")], timeout: .seconds(5))
            #expect(chunked.status == 401)
            let probeBody = try await RawHTTP.send(
                port: port, method: "GET", target: "/healthz", headers: [("Content-Length", "1000")], timeout: .seconds(5))
            #expect(probeBody.status == 400 && probeBody.text.contains("unexpected_body"))
        }
    }
}
