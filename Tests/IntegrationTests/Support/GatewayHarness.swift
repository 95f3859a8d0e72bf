import AsyncHTTPClient
import Collection
import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import PostgresStorage
import Prometheus
import ServiceLifecycle

/// Runs the gateway's real services (PostgreSQL client and admin API on an ephemeral port) against a fresh
/// database, and talks to it over real HTTP.
struct GatewayHarness: Sendable {
    let baseURL: String
    let token: Secret
    let database: DatabaseURL
    let keyRing: KeyRing

    @discardableResult
    static func run<R: Sendable>(
        logs: LogCapture? = nil, keyRing: KeyRing = .random(), maxBodyBytes: Int = 64 * 1024,
        microsoft: URL = URL(string: "http://127.0.0.1:1")!,
        utmstackSocket: String = "/tmp/o365gw-none/engine.sock",
        collection: CollectionSettings = .init(),
        microsoftRetries: Int = 5,
        sharing other: GatewayHarness? = nil,
        adjust: @Sendable (inout GatewayConfiguration) throws -> Void = { _ in },
        _ body: @Sendable (GatewayHarness) async throws -> R
    ) async throws -> R {
        // Another replica on `other`'s database (same key ring), or a fresh database.
        let keyRing = other?.keyRing ?? keyRing
        let database = if let other { other.database } else { try await TestDatabase.create("api") }
        let logger = logs?.logger() ?? {
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            return logger
        }()
        _ = try await Gateway.migrate(database, logger: logger)
        let token = Secret("test-admin-token-\(UUID().uuidString)")
        var configuration = try GatewayConfiguration(
            database: database, keyRing: keyRing, adminToken: token, listen: ListenAddress(host: "127.0.0.1", port: 0),
            maxRequestBodyBytes: maxBodyBytes,
            forwarder: .init(endpoint: .engineSocket(path: utmstackSocket), initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(500)),
            microsoft: .init(
                overrides: .init(login: microsoft, manage: microsoft, graph: microsoft), requestsPerMinute: 60_000,
                maxRetries: microsoftRetries))
        configuration.collection = collection
        try adjust(&configuration)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let services = try Gateway.services(
            configuration, metrics: PrometheusCollectorRegistry(), logger: logger,
            onListening: { continuation.yield($0) })
        let group = ServiceGroup(services: services, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let harness = GatewayHarness(
                baseURL: "http://127.0.0.1:\(port)", token: token, database: database, keyRing: keyRing)
            let result: R
            do {
                result = try await body(harness)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }

    enum Auth: Sendable { case admin, none, token(String) }

    func request(
        _ method: HTTPMethod, _ path: String, json: String? = nil, auth: Auth = .admin,
        headers: [(String, String)] = [], contentType: String = "application/json"
    ) async throws -> TestResponse {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        switch auth {
        case .admin: request.headers.add(name: "Authorization", value: "Bearer \(token.unredacted)")
        case .token(let value): request.headers.add(name: "Authorization", value: value)
        case .none: break
        }
        if let json {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: json))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
        return TestResponse(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
    }
}

struct TestResponse: Sendable {
    let status: Int
    let headers: HTTPHeaders
    let body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    /// `error.code` of an error response.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }
}

/// A valid onboarding body; `overrides` replace or (with nil) remove fields.
func tenantBody(
    tenantId: String = UUID().uuidString.lowercased(), secret: String = "Abc~def.ghi_jkl-mno1234567890pqrstuvwx",
    _ overrides: [String: Any?] = [:]
) -> String {
    var fields: [String: Any] = [
        "name": "Contoso Ltd", "tenantId": tenantId, "clientId": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
        "clientSecret": secret,
    ]
    for (key, value) in overrides { fields[key] = value }
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
