import AsyncHTTPClient
import Foundation
import GatewayApp
import GatewayCore
import MicrosoftSimulator
import NIOHTTP1
import NIOSSL
import Testing

@Suite(.timeLimit(.minutes(2))) struct AdminAPITests {
    @Test func onboardListGetPatchRotateDelete() async throws {
        try await GatewayHarness.run { gw in
            let msTenant = UUID().uuidString.lowercased()
            let created = try await gw.request(
                .POST, "/api/v1/tenants",
                json: tenantBody(tenantId: msTenant, [
                    "contentTypes": ["DLP.All", "Audit.Exchange"], "cloud": "gcc",
                    "secretExpiresAt": "2027-01-31T10:00:00+02:00",
                ]))
            #expect(created.status == 201)
            let tenant = created.json
            let id = try #require(tenant["id"] as? String)
            #expect(created.headers["ETag"].first == "\"1\"")
            #expect(created.headers["Location"].first == "/api/v1/tenants/\(id)")
            #expect(tenant["tenantId"] as? String == msTenant)
            #expect(tenant["cloud"] as? String == "gcc")
            #expect(tenant["contentTypes"] as? [String] == ["Audit.Exchange", "DLP.All"])
            #expect(tenant["utmTenantId"] as? String == defaultUTMStackTenantID)
            #expect(tenant["dataSource"] as? String == "Contoso Ltd")
            #expect(tenant["enabled"] as? Bool == true)
            #expect(tenant["secretExpiresAt"] as? String == "2027-01-31T08:00:00.000Z")
            #expect(tenant["clientSecret"] == nil)

            let list = try await gw.request(.GET, "/api/v1/tenants")
            #expect(list.status == 200)
            #expect((list.json["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])

            let got = try await gw.request(.GET, "/api/v1/tenants/\(id)")
            #expect(got.status == 200 && got.json["name"] as? String == "Contoso Ltd")

            let patched = try await gw.request(
                .PATCH, "/api/v1/tenants/\(id)", json: #"{"enabled": false, "name": "Contoso", "dataSource": "contoso-o365"}"#,
                headers: [("If-Match", "\"1\"")])
            #expect(patched.status == 200)
            #expect(patched.json["enabled"] as? Bool == false)
            #expect(patched.json["name"] as? String == "Contoso")
            #expect(patched.json["dataSource"] as? String == "contoso-o365")
            #expect(patched.json["contentTypes"] as? [String] == ["Audit.Exchange", "DLP.All"])
            #expect(patched.json["version"] as? Int == 2)
            #expect(patched.headers["ETag"].first == "\"2\"")

            let rotated = try await gw.request(
                .PUT, "/api/v1/tenants/\(id)/secret",
                json: #"{"clientSecret": "New~secret.value_0123456789abcdefghij", "secretExpiresAt": "2028-01-01T00:00:00Z"}"#)
            #expect(rotated.status == 200)
            #expect(rotated.json["secretExpiresAt"] as? String == "2028-01-01T00:00:00.000Z")
            #expect(rotated.json["version"] as? Int == 3)
            for response in [created, list, got, patched, rotated] {
                #expect(!response.body.contains("Abc~def") && !response.body.contains("New~secret"))
            }

            let deleted = try await gw.request(.DELETE, "/api/v1/tenants/\(id)")
            #expect(deleted.status == 204)
            #expect(try await gw.request(.GET, "/api/v1/tenants/\(id)").status == 404)
            #expect((try await gw.request(.GET, "/api/v1/tenants").json["items"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func authenticationIsRequiredUnderAPI() async throws {
        try await GatewayHarness.run { gw in
            let missing = try await gw.request(.GET, "/api/v1/tenants", auth: .none)
            #expect(missing.status == 401 && missing.errorCode == "missing_token")
            #expect(missing.headers["WWW-Authenticate"].first == "Bearer")
            let wrong = try await gw.request(.GET, "/api/v1/tenants", auth: .token("Bearer not-the-token"))
            #expect(wrong.status == 401 && wrong.errorCode == "invalid_token")
            let prefixOnly = try await gw.request(
                .GET, "/api/v1/tenants", auth: .token("Bearer " + String(gw.token.unredacted.dropLast())))
            #expect(prefixOnly.status == 401)
            let basic = try await gw.request(.GET, "/api/v1/tenants", auth: .token("Basic \(gw.token.unredacted)"))
            #expect(basic.status == 401)
            let write = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(), auth: .none)
            #expect(write.status == 401)
            #expect((try await gw.request(.GET, "/api/v1/tenants").json["items"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func unauthenticatedEndpoints() async throws {
        try await GatewayHarness.run { gw in
            let health = try await gw.request(.GET, "/healthz", auth: .none)
            #expect(health.status == 200)
            let ready = try await gw.request(.GET, "/readyz", auth: .none)
            #expect(ready.status == 200 && ready.body == "ready\n")
            let document = try await gw.request(.GET, "/api/v1/openapi.yaml", auth: .none)
            #expect(document.status == 200 && document.body.hasPrefix("openapi: 3.1.0"))
            _ = try await gw.request(.GET, "/api/v1/tenants")
            let metrics = try await gw.request(.GET, "/metrics", auth: .none)
            #expect(metrics.status == 200)
            #expect(metrics.body.contains(#"o365gw_http_requests_total{method="GET",route="/api/v1/tenants",status="200"} 1"#))
        }
    }

    /// Every malformed request is a 4xx with a stable code and a message naming what to fix, and writes nothing.
    @Test func malformedRequestsAreRejectedAndWriteNothing() async throws {
        try await GatewayHarness.run { gw in
            let cases: [(String, String, Int, String, String)] = [
                ("tenantId not a GUID", tenantBody(tenantId: "contoso.onmicrosoft.com"), 400, "invalid_field", "tenantId"),
                ("clientId not a GUID", tenantBody(["clientId": "abc"]), 400, "invalid_field", "clientId"),
                ("publisherId not a GUID", tenantBody(["publisherId": "x"]), 400, "invalid_field", "publisherId"),
                ("missing name", tenantBody(["name": nil]), 400, "missing_field", "name"),
                ("missing secret", tenantBody(["clientSecret": nil]), 400, "missing_field", "clientSecret"),
                ("empty name", tenantBody(["name": "   "]), 400, "invalid_field", "name"),
                ("long name", tenantBody(["name": String(repeating: "n", count: 201)]), 400, "invalid_field", "name"),
                ("control characters", tenantBody(["name": "a\u{7}b"]), 400, "invalid_field", "name"),
                ("secret id instead of value", tenantBody(secret: UUID().uuidString), 400, "invalid_field", "secret's ID"),
                ("unknown content type", tenantBody(["contentTypes": ["Audit.Teams"]]), 400, "invalid_field", "contentTypes[0]"),
                ("wrong case content type", tenantBody(["contentTypes": ["audit.exchange"]]), 400, "invalid_field", "contentTypes[0]"),
                ("empty content types", tenantBody(["contentTypes": [String]()]), 400, "invalid_field", "contentTypes"),
                ("unknown cloud", tenantBody(["cloud": "azure-germany"]), 400, "invalid_field", "cloud"),
                ("bad date", tenantBody(["secretExpiresAt": "next tuesday"]), 400, "invalid_field", "secretExpiresAt"),
                ("date without zone", tenantBody(["secretExpiresAt": "2027-01-31T00:00:00"]), 400, "invalid_field", "secretExpiresAt"),
                ("unknown field", tenantBody(["clientSecretId": "x"]), 400, "unknown_field", "clientSecretId"),
                ("wrong type", tenantBody(["name": 42]), 400, "invalid_field", "name"),
                ("not JSON", "{\"name\": ", 400, "invalid_json", "JSON"),
                ("JSON array", "[]", 400, "invalid_json", "JSON"),
            ]
            for (label, body, status, code, mention) in cases {
                let response = try await gw.request(.POST, "/api/v1/tenants", json: body)
                #expect(response.status == status, "\(label): \(response.body)")
                #expect(response.errorCode == code, "\(label): \(response.body)")
                #expect(response.errorMessage?.contains(mention) == true, "\(label): \(response.body)")
            }
            let wrongMediaType = try await gw.request(
                .POST, "/api/v1/tenants", json: tenantBody(), contentType: "text/plain")
            #expect(wrongMediaType.status == 415 && wrongMediaType.errorCode == "unsupported_media_type")
            let noBody = try await gw.request(.POST, "/api/v1/tenants")
            #expect((400..<500).contains(noBody.status) && noBody.errorCode != nil)
            #expect((try await gw.request(.GET, "/api/v1/tenants").json["items"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func oversizedBodiesAreRefused() async throws {
        try await GatewayHarness.run(maxBodyBytes: 1024) { gw in
            let big = tenantBody(["name": String(repeating: "x", count: 2000)])
            let response = try await gw.request(.POST, "/api/v1/tenants", json: big)
            #expect(response.status == 413 && response.errorCode == "payload_too_large")
        }
    }

    @Test func duplicatesUnknownIdsAndStaleVersions() async throws {
        try await GatewayHarness.run { gw in
            let msTenant = UUID().uuidString.lowercased()
            let first = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(tenantId: msTenant))
            #expect(first.status == 201)
            let id = try #require(first.json["id"] as? String)
            let duplicate = try await gw.request(
                .POST, "/api/v1/tenants", json: tenantBody(tenantId: msTenant.uppercased(), ["name": "Other"]))
            #expect(duplicate.status == 409 && duplicate.errorCode == "tenant_exists")

            let unknown = UUID().uuidString.lowercased()
            for (method, path, body) in [
                (HTTPMethodName.GET, "/api/v1/tenants/\(unknown)", nil),
                (.PATCH, "/api/v1/tenants/\(unknown)", #"{"enabled": false}"#),
                (.DELETE, "/api/v1/tenants/\(unknown)", nil),
                (.PUT, "/api/v1/tenants/\(unknown)/secret", #"{"clientSecret": "Another~secret.value_1234567890"}"#),
                (.POST, "/api/v1/tenants/\(unknown)/validate", nil),
                (.GET, "/api/v1/tenants/not-a-guid", nil),
            ] {
                let response = try await gw.request(method.nio, path, json: body)
                #expect(response.status == 404 && response.errorCode == "tenant_not_found", "\(method) \(path)")
            }

            let stale = try await gw.request(
                .PATCH, "/api/v1/tenants/\(id)", json: #"{"enabled": false}"#, headers: [("If-Match", "\"7\"")])
            #expect(stale.status == 412 && stale.errorCode == "version_mismatch")
            let staleDelete = try await gw.request(.DELETE, "/api/v1/tenants/\(id)", headers: [("If-Match", "\"0\"")])
            #expect(staleDelete.status == 412)
            // An If-Match naming no current ETag, in any form, is a failed precondition (RFC 9110 §13.1.1).
            for value in ["seven", "W/\"1\"", "\"2\", \"3\""] {
                let failed = try await gw.request(
                    .PATCH, "/api/v1/tenants/\(id)", json: #"{"enabled": false}"#, headers: [("If-Match", value)])
                #expect(failed.status == 412 && failed.errorCode == "version_mismatch", "\(value)")
                #expect(failed.headers["ETag"].first == "\"1\"", "412 carries the current ETag")
            }
            let emptyPatch = try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: "{}")
            #expect(emptyPatch.status == 400 && emptyPatch.errorCode == "empty_patch")
            let unchanged = try await gw.request(.GET, "/api/v1/tenants/\(id)")
            #expect(unchanged.json["version"] as? Int == 1 && unchanged.json["enabled"] as? Bool == true)

            let route = try await gw.request(.GET, "/api/v1/nothing-here")
            #expect(route.status == 404 && route.errorCode == "route_not_found")
        }
    }
}

/// The HTTP method names used in table-driven tests.
enum HTTPMethodName: String, CustomStringConvertible {
    case GET, POST, PATCH, PUT, DELETE, TRACE
    var description: String { rawValue }
    var nio: NIOHTTP1.HTTPMethod { .init(rawValue: rawValue) }
}


@Suite(.timeLimit(.minutes(2))) struct HTTPSemanticsTests {
    /// What curl, a Kubernetes probe, Prometheus and an uptime monitor expect of HTTP (RFC 9110).
    @Test func methodsAcceptAndPreconditionsAsClientsExpectThem() async throws {
        try await GatewayHarness.run { gw in
            for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.yaml"] {
                for accept in ["application/json", "text/html", "application/openmetrics-text; version=1.0.0"] {
                    let response = try await gw.request(.GET, path, auth: .none, headers: [("Accept", accept)])
                    #expect(response.status == 200, "\(path) with Accept \(accept)")
                }
                let head = try await gw.request(.HEAD, path, auth: .none)
                #expect(head.status == 200 && head.body.isEmpty, "HEAD \(path)")
            }
            let headList = try await gw.request(.HEAD, "/api/v1/tenants")
            #expect(headList.status == 200 && headList.body.isEmpty)

            for (method, path, allow) in [
                (HTTPMethodName.PUT, "/api/v1/tenants", "GET, HEAD, POST"),
                (.TRACE, "/healthz", "GET, HEAD"),
                (.POST, "/api/v1/tenants/\(UUID().uuidString)", "DELETE, GET, HEAD, PATCH"),
                (.GET, "/api/v1/tenants/\(UUID().uuidString)/validate", "POST"),
            ] {
                let response = try await gw.request(method.nio, path)
                #expect(response.status == 405 && response.errorCode == "method_not_allowed", "\(method) \(path) \(response.status) \(response.body)")
                #expect(response.headers["Allow"].first == allow, "\(method) \(path)")
            }
            #expect(try await gw.request(.GET, "/api/v1/nothing-here").status == 404)

            let created = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody())
            let id = try #require(created.json["id"] as? String)
            // No field of the API takes null: it is refused, not read as absent.
            let null = try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"dataSource": null}"#)
            #expect(null.status == 400 && null.errorCode == "invalid_field" && null.errorMessage?.contains("dataSource") == true)
            let nested = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(["contentTypes": [NSNull()]]))
            #expect(nested.status == 400 && nested.errorMessage?.contains("contentTypes[0]") == true)
            // A list of entity tags matches when one of them is current.
            let listed = try await gw.request(
                .PATCH, "/api/v1/tenants/\(id)", json: #"{"enabled": false}"#, headers: [("If-Match", "\"9\", \"1\"")])
            #expect(listed.status == 200 && listed.headers["ETag"].first == "\"2\"")
            let star = try await gw.request(.PATCH, "/api/v1/tenants/\(id)", json: #"{"enabled": true}"#, headers: [("If-Match", "*")])
            #expect(star.status == 200)
            let unacceptable = try await gw.request(.GET, "/api/v1/tenants", headers: [("Accept", "image/png")])
            #expect(unacceptable.status == 406)
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct AdminTLSTests {
    /// Clients send customers' secrets to the admin API: with a certificate it speaks HTTPS only.
    @Test func theAdminAPIServesHTTPSWithTheGivenCertificate() async throws {
        let pki = try TestPKI()
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("o365gw-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificateFile = directory.appendingPathComponent("tls.crt").path
        let keyFile = directory.appendingPathComponent("tls.key").path
        try pki.serverCertificatePEM.write(toFile: certificateFile, atomically: true, encoding: .utf8)
        try pki.serverKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
        #expect(throws: GatewayError.self) { try AdminTLS.from(certificateFile: certificateFile, keyFile: nil) }
        #expect(throws: GatewayError.self) { try AdminTLS.from(certificateFile: keyFile, keyFile: keyFile) }
        #expect(try AdminTLS.from(certificateFile: nil, keyFile: "") == nil)
        try await GatewayHarness.run(adjust: { $0.adminTLS = try AdminTLS.from(certificateFile: certificateFile, keyFile: keyFile) }) { gw in
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pki.caPEM.utf8)))
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            let https = gw.baseURL.replacingOccurrences(of: "http://", with: "https://")
            var request = HTTPClientRequest(url: https + "/api/v1/tenants")
            request.headers.add(name: "Authorization", value: "Bearer \(gw.token.unredacted)")
            let response = try await client.execute(request, timeout: .seconds(10))
            try await client.shutdown()
            #expect(response.status == .ok)
            // Plain HTTP on the same port gets no answer from the API.
            let plain = try? await HTTPClient.shared.execute(HTTPClientRequest(url: gw.baseURL + "/healthz"), timeout: .seconds(5))
            #expect(plain?.status != .ok)
        }
    }
}

extension AdminTLSTests {
    /// cert-manager renews the certificate and key files in place: a new connection gets the new certificate
    /// without a restart. A half-written renewal (the new certificate beside the old key) is not used meanwhile.
    @Test func aRenewedCertificateIsServedWithoutARestart() async throws {
        let first = try TestPKI(), second = try TestPKI()
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("o365gw-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificateFile = directory.appendingPathComponent("tls.crt").path
        let keyFile = directory.appendingPathComponent("tls.key").path
        try first.serverCertificatePEM.write(toFile: certificateFile, atomically: true, encoding: .utf8)
        try first.serverKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
        #expect(throws: GatewayError.self, "a key of another certificate is refused at startup") {
            let mismatched = directory.appendingPathComponent("other.key").path
            try second.serverKeyPEM.write(toFile: mismatched, atomically: true, encoding: .utf8)
            return try AdminTLS.from(certificateFile: certificateFile, keyFile: mismatched)
        }
        let logs = LogCapture()
        try await GatewayHarness.run(logs: logs, adjust: {
            $0.adminTLS = try AdminTLS.from(certificateFile: certificateFile, keyFile: keyFile)
            $0.tlsCheckInterval = .milliseconds(100)
        }) { gw in
            let https = gw.baseURL.replacingOccurrences(of: "http://", with: "https://") + "/healthz"
            /// Whether a new connection trusting only `pki`'s CA gets an answer.
            @Sendable func served(by pki: TestPKI) async -> Bool {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .certificates((try? NIOSSLCertificate.fromPEMBytes(Array(pki.caPEM.utf8))) ?? [])
                var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
                configuration.connectionPool.retryConnectionEstablishment = false  // a refused handshake fails at once
                let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
                let status = try? await client.execute(HTTPClientRequest(url: https), timeout: .seconds(5)).status
                try? await client.shutdown()
                return status == .ok
            }
            let before = (first: await served(by: first), second: await served(by: second))
            #expect(before.first && !before.second)

            try second.serverCertificatePEM.write(toFile: certificateFile, atomically: true, encoding: .utf8)
            try await Task.sleep(for: .milliseconds(500))
            #expect(await served(by: first), "the new certificate with the old key is not used")
            try second.serverKeyPEM.write(toFile: keyFile, atomically: true, encoding: .utf8)
            let renewed = try await eventually(timeout: .seconds(10)) { await served(by: second) }
            #expect(renewed, "a new connection gets the renewed certificate")
            #expect(!(await served(by: first)))
            #expect(logs.text.components(separatedBy: "were not loaded").count - 1 == 1, "the half-written renewal is reported once")
            #expect(logs.text.contains("admin API certificate renewed"))
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct SecretExpiryReportAPITests {
    @Test func reportInJSONAndCSV() async throws {
        try await GatewayHarness.run { gw in
            let soon = RFC3339.format(Date().addingTimeInterval(5 * 86_400 + 3600))
            _ = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(["name": "Soon", "secretExpiresAt": soon]))
            _ = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(["name": "Unknown"]))
            let json = try await gw.request(.GET, "/api/v1/reports/secret-expiry?withinDays=7")
            #expect(json.status == 200)
            let items = try #require(json.json["items"] as? [[String: Any]])
            #expect(items.map { $0["name"] as? String } == ["Soon", "Unknown"])
            #expect(items[0]["status"] as? String == "expiring" && items[0]["daysLeft"] as? Int == 5)
            #expect(items[0]["source"] as? String == "onboarding")
            #expect((items[0]["advice"] as? String)?.contains("expires in 5 day(s)") == true)
            #expect(items[1]["status"] as? String == "unknown" && items[1]["daysLeft"] == nil)
            let narrow = try await gw.request(.GET, "/api/v1/reports/secret-expiry?withinDays=2")
            let narrowItems = try #require(narrow.json["items"] as? [[String: Any]])
            #expect(narrowItems.map { $0["name"] as? String } == ["Unknown", "Soon"])
            #expect(narrowItems[1]["status"] as? String == "ok")
            let csv = try await gw.request(.GET, "/api/v1/reports/secret-expiry", headers: [("Accept", "text/csv")])
            #expect(csv.status == 200 && csv.headers["Content-Type"].first?.hasPrefix("text/csv") == true)
            #expect(csv.body.hasPrefix(SecretExpiryReport.csvHeader + "\r\n"))
            #expect(csv.body.contains(",Soon,") && csv.body.contains(",5,expiring,onboarding,,"))
            let html = try await gw.request(.GET, "/api/v1/reports/secret-expiry", headers: [("Accept", "text/html")])
            #expect(html.status == 200 && html.headers["Content-Type"].first?.hasPrefix("text/html") == true)
            #expect(html.body.hasPrefix("<!DOCTYPE html>") && html.body.contains(#"<tr class="expiring"><td>expiring</td><td>Soon</td>"#))
            let preferred = try await gw.request(
                .GET, "/api/v1/reports/secret-expiry", headers: [("Accept", "text/csv;q=0.5, text/html;q=0.9")])
            #expect(preferred.headers["Content-Type"].first?.hasPrefix("text/html") == true)
            let bad = try await gw.request(.GET, "/api/v1/reports/secret-expiry?withinDays=-1")
            #expect(bad.status == 400 && bad.errorCode == "invalid_field")
            let notANumber = try await gw.request(.GET, "/api/v1/reports/secret-expiry?withinDays=soon")
            #expect(notANumber.status == 400)
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct ValidateAndCertificateAPITests {
    @Test func validateReportsWhatIsWrongInWordsAnAdminCanActOn() async throws {
        var configuration = SimulatorConfiguration.generated(tenants: 2, seed: 21)
        configuration.tenants[1].mode = .expiredSecret
        try await withSimulator(configuration) { simulator, url in
            try await GatewayHarness.run(microsoft: url) { gw in
                var results: [[String: Any]] = []
                for tenant in simulator.configuration.tenants {
                    let created = try await gw.request(
                        .POST, "/api/v1/tenants",
                        json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                            "clientId": tenant.clientId.uuidString, "name": tenant.name,
                        ]))
                    let id = try #require(created.json["id"] as? String)
                    let validated = try await gw.request(.POST, "/api/v1/tenants/\(id)/validate")
                    #expect(validated.status == 200)
                    results.append(validated.json)
                }
                #expect(results[0]["ok"] as? Bool == true)
                let healthy = try #require(results[0]["checks"] as? [[String: Any]])
                #expect(healthy.map { $0["name"] as? String } == ["token", "secretExpiry", "permissions", "subscriptions"])
                #expect((healthy[1]["advice"] as? String)?.contains("2027-06-30T00:00:00") == true, "\(healthy[1])")
                #expect(results[1]["ok"] as? Bool == false)
                let expired = try #require((results[1]["checks"] as? [[String: Any]])?.first)
                #expect(expired["code"] as? String == "client_secret_expired")
                #expect((expired["advice"] as? String)?.contains("PUT /api/v1/tenants/{id}/secret") == true)
            }
        }
    }

    @Test func certificatesAreOnboardedCheckedAndNeverReturned() async throws {
        let (certificate, key) = try makeRSACertificate()
        try await GatewayHarness.run { gw in
            let body = tenantBody(["clientSecret": nil, "clientCertificate": ["certificatePem": certificate, "privateKeyPem": key, "algorithm": "RS256"]])
            let created = try await gw.request(.POST, "/api/v1/tenants", json: body)
            #expect(created.status == 201, "\(created.body)")
            #expect(created.json["credentialType"] as? String == "certificate")
            #expect(created.json["secretExpiresAt"] != nil, "the certificate's expiry is tracked")
            #expect(!created.body.contains("PRIVATE KEY") && !created.body.contains("BEGIN CERTIFICATE"))
            let (otherCertificate, _) = try makeRSACertificate()
            let cases: [([String: Any?], String)] = [
                (["clientSecret": nil, "clientCertificate": ["certificatePem": "nope", "privateKeyPem": key]], "certificatePem"),
                (["clientSecret": nil, "clientCertificate": ["certificatePem": certificate, "privateKeyPem": "nope"]], "privateKeyPem"),
                (["clientSecret": nil, "clientCertificate": ["certificatePem": otherCertificate, "privateKeyPem": key]], "does not belong"),
                (["clientCertificate": ["certificatePem": certificate, "privateKeyPem": key]], "not both"),
                (["clientSecret": nil], "clientCertificate"),
            ]
            for (overrides, mention) in cases {
                let response = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(overrides))
                #expect(response.status == 400 && response.errorMessage?.contains(mention) == true, "\(response.body)")
                #expect(!response.body.contains("PRIVATE KEY"))
            }
        }
    }
}
