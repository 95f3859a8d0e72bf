import AdminAPI
import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import Testing

/// The admin listener holds nothing for slow or idle clients, serves a bounded number of connections, and refuses
/// bodies it would misread, each with a 4xx and a stable code.
@Suite(.timeLimit(.minutes(2))) struct AdminListenerTests {
    /// A client that sends half a request head and waits is disconnected after the idle timeout.
    @Test func aHalfSentHeadIsDisconnected() async throws {
        try await GatewayHarness.run(adjust: { $0.adminListener = .init(idleTimeout: .seconds(1), requestReadTimeout: .seconds(2)) }) { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            // Without the timeout the server waits for the rest of the head forever: the exchange's 10 s would end it.
            let answer = try await RawHTTP.exchange(
                port: port, writes: ["GET /api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "], timeout: .seconds(10))
            #expect(answer.isEmpty, "closed without an answer")
        }
    }

    /// A client that trickles its body, a byte at a time before the idle timeout each, is disconnected once the
    /// request has taken longer than the request read timeout.
    @Test func aTrickledBodyIsDisconnected() async throws {
        try await GatewayHarness.run(adjust: { $0.adminListener = .init(idleTimeout: .seconds(1), requestReadTimeout: .seconds(2)) }) { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            let head = "POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(gw.token.unredacted)\r\n"
                + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            // 60 bytes at 250 ms take 15 s: past the exchange's 10 s unless the server closes first.
            let answer = try await RawHTTP.exchange(
                port: port, writes: [head] + Array(repeating: " ", count: 60), pause: .milliseconds(250), timeout: .seconds(10))
            #expect(!String(decoding: answer, as: UTF8.self).contains("201"))
        }
    }

    /// At the limit, a new connection takes the place of the longest idle one, so idle connections never lock out a
    /// probe.
    @Test func idleConnectionsGiveWayToAProbe() async throws {
        try await GatewayHarness.run(adjust: { $0.adminListener = .init(idleTimeout: .seconds(60), maxConnections: 2) }) { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            var idle: [any Channel] = []
            for _ in 0..<4 { idle.append(try await bootstrap.connect(host: "127.0.0.1", port: port).get()) }
            let probe = try await RawHTTP.send(port: port, method: "GET", target: "/healthz", timeout: .seconds(5))
            #expect(probe.status == 200, "idle connections gave way to the probe")
            for channel in idle { try? await channel.close() }
            // That places held by requests in progress are not given away: ConnectionRegistryTests.
        }
    }

    /// An answer given before the request's body was read (no token here) ends the connection: the rest of the body
    /// is not read.
    @Test func anAnswerBeforeTheBodyClosesTheConnection() async throws {
        try await GatewayHarness.run { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            for target in ["/api/v1/tenants", "/no/such/route", "/healthz"] {
                let head = "POST \(target) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
                // 100 writes of 1,000 bytes, 100 ms apart: 10 s, past the exchange's 8 s unless the server closes.
                let answer = String(decoding: try await RawHTTP.exchange(
                    port: port, writes: [head] + Array(repeating: String(repeating: " ", count: 1000), count: 100),
                    pause: .milliseconds(100), timeout: .seconds(8)), as: UTF8.self)
                #expect(answer.hasPrefix("HTTP/1.1 4") && answer.lowercased().contains("connection: close"), "\(target): \(answer.prefix(200))")
            }
        }
    }

    /// Bodies are JSON, each key once, within the limit whether their length is declared or they come in chunks.
    @Test func bodiesAreCheckedBeforeTheyAreDecoded() async throws {
        try await GatewayHarness.run(maxBodyBytes: 2048) { gw in
            let port = try #require(URL(string: gw.baseURL)?.port)
            let auth = ("Authorization", "Bearer \(gw.token.unredacted)")
            let duplicate = try await gw.request(
                .POST, "/api/v1/tenants", json: #"{"name": "A", "name": "B", "tenantId": "x"}"#)
            #expect(duplicate.status == 400 && duplicate.errorCode == "duplicate_key" && duplicate.errorMessage?.contains("name") == true)
            let escaped = try await gw.request(.POST, "/api/v1/tenants", json: #"{"name": "A", "n\u0061me": "B"}"#)
            #expect(escaped.errorCode == "duplicate_key", "keys are compared unescaped")
            let nested = try await gw.request(
                .POST, "/api/v1/tenants", json: #"{"clientCertificate": {"certificatePem": "a", "certificatePem": "b"}}"#)
            #expect(nested.errorCode == "duplicate_key" && nested.errorMessage?.contains("clientCertificate.certificatePem") == true)
            let noType = try await RawHTTP.send(port: port, method: "POST", target: "/api/v1/tenants", headers: [auth], body: tenantBody())
            #expect(noType.status == 415 && noType.text.contains("unsupported_media_type"))
            let textType = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(), contentType: "text/plain")
            #expect(textType.status == 415)
            let bom = try await gw.request(.POST, "/api/v1/tenants", json: "\u{FEFF}" + #"{"name": "A", "name": "B"}"#)
            #expect(bom.status == 400 && bom.errorCode == "invalid_json", "a byte-order mark is not read past")
            let utf16 = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(), contentType: "application/json; charset=utf-16")
            #expect(utf16.status == 415)
            let utf8 = try await gw.request(.POST, "/api/v1/tenants", json: "{}", contentType: "application/json; charset=UTF-8")
            #expect(utf8.status == 400 && utf8.errorCode == "missing_field", "charset=utf-8 is JSON")
            let nullField = try await gw.request(.PATCH, "/api/v1/tenants/\(UUID())", json: #"{"dataSource": null}"#)
            #expect(nullField.status == 400 && nullField.errorCode == "invalid_field")
            // 3,000 bytes in three chunks, no length declared: 413, not a 500.
            let chunk = String(repeating: " ", count: 1000)
            let chunked = "POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \(gw.token.unredacted)\r\n"
                + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + String(repeating: "3E8\r\n\(chunk)\r\n", count: 3) + "0\r\n\r\n"
            let answer = String(decoding: try await RawHTTP.exchange(port: port, writes: [chunked], timeout: .seconds(10)), as: UTF8.self)
            #expect(answer.hasPrefix("HTTP/1.1 413") && answer.contains("payload_too_large"), "\(answer.prefix(300))")
            let declared = try await gw.request(.POST, "/api/v1/tenants", json: String(repeating: " ", count: 3000) + "{}")
            #expect(declared.status == 413)
            for query in ["/api/v1/dead-letters?limit=abc", "/api/v1/dead-letters?limit=99999999999999999999", "/api/v1/reports/secret-expiry?withinDays=abc"] {
                let answer = try await gw.request(.GET, query)
                #expect(answer.status == 400 && answer.errorCode == "invalid_parameter", "\(query): \(answer.body)")
            }
            let getWithBody = try await gw.request(.GET, "/api/v1/tenants", json: "{}")
            #expect(getWithBody.status == 400 && getWithBody.errorCode == "unexpected_body")
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
