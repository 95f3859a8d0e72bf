import ActivityAPI
import CredentialCrypto
import Foundation
import GatewayCore
import MicrosoftSimulator
import PostgresNIO
import PostgresStorage
import Testing
import UTMStackForwarder
import UTMStackReceiver

@testable import GatewayApp

/// The expiry date from Microsoft itself (Graph, the token endpoint's refusal), and one alert per stage for the whole
/// fleet (docs/expiry.md).
@Suite(.timeLimit(.minutes(3))) struct SecretExpiryWatcherTests {
    static func date(days: Double) -> String { RFC3339.format(Date().addingTimeInterval(days * 86_400 + 3600)) }

    /// Tenants whose date only Graph knows (20 and 5 days left, among other credentials of the same app), one whose
    /// app may not read its registration, one registered elsewhere, and one whose secret Microsoft refuses.
    @Test func theReportShowsWhatMicrosoftSays() async throws {
        let (certificatePEM, keyPEM) = try makeRSACertificate()
        let certificate = ClientCertificate(certificatePEM: certificatePEM, privateKeyPEM: Secret(keyPEM))
        let thumbprint = Data(try CertificateCredential(certificate).thumbprints[0]).base64EncodedString()
        var simulated = SimulatorConfiguration.generated(tenants: 5, seed: 61)
        let secret = simulated.tenants[0].clientSecret!
        simulated.tenants[0].name = "Several secrets"
        simulated.tenants[0].registration = .init(passwordCredentials: [
            .init(hint: "Zq9", endDateTime: Self.date(days: 700)),
            .init(hint: String(secret.prefix(3)), endDateTime: Self.date(days: 20)),
            .init(hint: "Ab1", endDateTime: Self.date(days: 400)),
        ])
        simulated.tenants[1].name = "Certificate"
        simulated.tenants[1].clientSecret = nil
        simulated.tenants[1].certificatePem = certificatePEM
        simulated.tenants[1].registration = .init(keyCredentials: [
            .init(customKeyIdentifier: Data(repeating: 1, count: 20).base64EncodedString(), endDateTime: Self.date(days: 300)),
            .init(customKeyIdentifier: thumbprint, endDateTime: Self.date(days: 5)),
        ])
        simulated.tenants[2].name = "Denied"
        simulated.tenants[2].graphPermission = false
        simulated.tenants[3].name = "Elsewhere"
        simulated.tenants[3].registration = .init(inThisTenant: false)
        simulated.tenants[4].name = "Refused"
        simulated.tenants[4].mode = .expiredSecret
        // A receiver takes what the healthy tenants collect, so the gateway stops without a drain to wait for.
        let socket = temporarySocketPath()
        try await withSimulator(simulated) { simulator, url in
            try await withReceiver(path: socket, received: ReceivedLogs(keepLogs: false)) {
                try await GatewayHarness.run(microsoft: url, utmstackSocket: socket, adjust: { $0.expiryRound = .milliseconds(300) }) { gw in
                    var created: [String: String] = [:]
                    for tenant in simulator.configuration.tenants {
                        var fields: [String: Any?] = ["name": tenant.name, "clientId": tenant.clientId.uuidString]
                        if tenant.name == "Certificate" {
                            fields["clientSecret"] = .some(nil)
                            fields["clientCertificate"] = ["certificatePem": certificatePEM, "privateKeyPem": keyPEM]
                        }
                        if tenant.name == "Denied" || tenant.name == "Elsewhere" { fields["secretExpiresAt"] = Self.date(days: 200) }
                        let response = try await gw.request(
                            .POST, "/api/v1/tenants",
                            json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret ?? "unused-secret", fields))
                        #expect(response.status == 201, "\(response.body)")
                        created[tenant.name] = response.json["id"] as? String
                    }
                    @Sendable func report() async throws -> [String: [String: Any]] {
                        let items = try await gw.request(.GET, "/api/v1/reports/secret-expiry?withinDays=30").json["items"] as? [[String: Any]] ?? []
                        return Dictionary(uniqueKeysWithValues: items.map { ($0["name"] as! String, $0) })
                    }
                    let settled = try await eventually(timeout: .seconds(30)) {
                    let rows = try await report()
                        return rows.count == 5 && rows.values.allSatisfy { $0["graphLookup"] != nil }
                            && rows["Refused"]?["source"] as? String == "token_error"
                    }
                    let rows = try await report()
                    #expect(settled, "\(rows)")
                    let ids = created
                    let several = try #require(rows["Several secrets"])
                    #expect(several["source"] as? String == "graph" && several["daysLeft"] as? Int == 20, "never the later secrets")
                    #expect(several["status"] as? String == "expiring" && several["graphLookup"] as? String == "found")
                    let byCertificate = try #require(rows["Certificate"])
                    #expect(byCertificate["source"] as? String == "graph" && byCertificate["daysLeft"] as? Int == 5, "not the certificate's own notAfter")
                    let denied = try #require(rows["Denied"])
                    #expect(denied["source"] as? String == "onboarding" && denied["graphLookup"] as? String == "permission_denied")
                    #expect((denied["advice"] as? String)?.contains("Application.Read.All") == true)
                    #expect(rows["Elsewhere"]?["graphLookup"] as? String == "application_not_found")
                    #expect(rows["Elsewhere"]?["source"] as? String == "onboarding")
                    let refused = try #require(rows["Refused"])
                    #expect(refused["status"] as? String == "expired" && (refused["advice"] as? String)?.contains("Microsoft refuses") == true)

                    // validate says which permission would make the date exact.
                    let validated = try await gw.request(.POST, "/api/v1/tenants/\(ids["Denied"]!)/validate")
                    let expiryCheck = (validated.json["checks"] as? [[String: Any]])?.first { $0["name"] as? String == "secretExpiry" }
                    #expect(expiryCheck?["code"] as? String == "graph_permission_missing")
                    #expect((expiryCheck?["advice"] as? String)?.contains("Application.Read.All") == true)

                    // The refused tenant's units say to rotate.
                    let statusSaysRotate = try await eventually(timeout: .seconds(20)) {
                        let tenant = try await gw.request(.GET, "/api/v1/tenants/\(ids["Refused"]!)")
                        let status = tenant.json["status"] as? [[String: Any]] ?? []
                        return status.contains { ($0["lastError"] as? [String: Any])?["code"] as? String == "client_secret_expired" }
                    }
                    #expect(statusSaysRotate)

                    // A rotation forgets what Graph said of the old secret, and Graph is asked again.
                    let rotatedAt = Date()
                    let rotated = try await gw.request(
                        .PUT, "/api/v1/tenants/\(ids["Several secrets"]!)/secret",
                        json: #"{"clientSecret": "\#(secret)", "secretExpiresAt": "\#(Self.date(days: 90))"}"#)
                    #expect(rotated.status == 200)
                    let askedAgain = try await eventually(timeout: .seconds(20)) {
                        try await TestDatabase.withClient(gw.database) { database in
                            let rows = try await database.query(
                                "SELECT graph_checked_at FROM tenants WHERE id = \(UUID(uuidString: ids["Several secrets"]!)!)")
                            return try rows.decode(Date?.self).first.flatMap { $0 }.map { $0 >= rotatedAt.addingTimeInterval(-1) } ?? false
                        }
                    }
                    #expect(askedAgain)
                }
            }
        }
    }

    /// AADSTS7000222 marks the secret expired now; the next token Microsoft issues clears it.
    @Test func microsoftsRefusalIsRecordedAndClearedByTheNextToken() async throws {
        var simulated = SimulatorConfiguration.generated(tenants: 2, seed: 67)
        simulated.tenants[1].mode = .expiredSecret
        let db = try await TestDatabase.create("refusal")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await withSimulator(simulated) { simulator, url in
            try await TestDatabase.withClient(db) { database in
                let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
                let recorder = PostgresSecretExpiryStore(database: database, logger: quietLogger)
                var new = newTenant()
                new.secretExpiresAt = Date().addingTimeInterval(300 * 86_400)
                let tenant = try await store.create(new)
                let exchange = AsyncHTTPExchange(timeoutSeconds: 20)
                let tokens = TokenProvider(exchange: exchange, recorder: recorder, logger: quietLogger)
                func auth(_ simulatedTenant: SimulatorConfiguration.Tenant) -> TenantAuth {
                    var auth = simulatedAuth(simulatedTenant, url)
                    auth.tenant = tenant.id
                    return auth
                }
                await #expect(throws: MicrosoftError.self) { _ = try await tokens.token(for: auth(simulator.configuration.tenants[1])) }
                let refused = try #require(try await store.get(tenant.id))
                #expect(refused.secretExpirySource == .tokenError && refused.secretExpiresAt! <= Date())
                _ = try await tokens.token(for: auth(simulator.configuration.tenants[0]))
                let cleared = try #require(try await store.get(tenant.id))
                #expect(cleared.secretExpirySource == .onboarding && cleared.secretExpiresAt! > Date())
            }
        }
    }

    /// A tenant whose credential cannot be opened (sealed under a key this gateway lacks) is skipped by the Graph
    /// lookups: the other tenants' alerts still go out.
    @Test func oneUnreadableCredentialHoldsUpNoAlert() async throws {
        let db = try await TestDatabase.create("unreadable")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await withSimulator(SimulatorConfiguration.generated(tenants: 0)) { _, url in
            try await TestDatabase.withClient(db) { database in
                let other = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random(keyID: "gone")), logger: quietLogger)
                var lost = newTenant()
                lost.secretExpiresAt = Date().addingTimeInterval(3 * 86_400)
                _ = try await other.create(lost)
                let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
                var soon = newTenant()
                soon.secretExpiresAt = Date().addingTimeInterval(3 * 86_400)
                let readable = try await store.create(soon)
                let expiry = PostgresSecretExpiryStore(database: database, logger: quietLogger)
                let watcher = SecretExpiryWatcher(
                    owner: "replica-a", tenants: store, store: expiry,
                    validator: TenantValidator(client: activityClient(), overrides: .init(login: url, manage: url, graph: url), defaultPublisher: nil),
                    notifier: EngineNotifier(endpoint: .engineSocket(path: temporarySocketPath()), logger: quietLogger),
                    webhook: nil, policy: try ExpiryAlertPolicy(), interval: .seconds(60), logger: quietLogger)
                #expect(try await watcher.round(now: Date()))
                #expect(try await expiry.alerts(of: readable.id).map(\.stage) == ["7d"])
            }
        }
    }

    /// Two replicas on one database, both watching: each stage is alerted once, to UTMStack and to the webhook, and
    /// a replica started again afterwards alerts nothing again. A webhook that fails at first is retried.
    @Test func aReplicaPairAlertsOncePerStage() async throws {
        let socket = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        @Sendable func alerts() -> [String] {
            received.snapshot.messages.compactMap { message -> String? in
                guard let body = (try? JSONSerialization.jsonObject(with: Data(message.message.utf8))) as? [String: String],
                    let code = body["code"], code.hasPrefix("secret_")
                else { return nil }
                return "\(body["tenantName"]!):\(code)"
            }.sorted()
        }
        // Tenants the simulator does not know: Graph cannot be asked, so the onboarding dates hold.
        try await withSimulator(SimulatorConfiguration.generated(tenants: 0)) { _, microsoft in
            try await withWebhookReceiver { webhook, hookURL in
                webhook.failNext(1)
                try await withReceiver(path: socket, received: received) {
                    let adjust: @Sendable (inout GatewayConfiguration) throws -> Void = {
                        $0.expiryRound = .milliseconds(200)
                        $0.alertWebhook = try AlertWebhook(url: Secret(hookURL.absoluteString))
                    }
                    // The tenants exist before the replicas start: a paused one is never enabled, not even for a round.
                    let keyRing = KeyRing.random()
                    let database = try await TestDatabase.create("alerts")
                    _ = try await Gateway.migrate(database, logger: quietLogger)
                    try await TestDatabase.withClient(database) { client in
                        let store = PostgresTenantStore(database: client, sealer: CredentialSealer(keyRing: keyRing), logger: quietLogger)
                        for (name, days) in [("Soon", 5.0), ("Gone", -1.5), ("Fine", 90), ("Paused", 2)] {
                            var tenant = newTenant()
                            tenant.name = name
                            tenant.secretExpiresAt = Date().addingTimeInterval(days * 86_400 + 3600)
                            let created = try await store.create(tenant)
                            if name == "Paused" { _ = try await store.update(created.id, TenantChanges(enabled: false), precondition: nil) }
                        }
                    }
                    let seed = GatewayHarness(baseURL: "", token: Secret("unused"), database: database, keyRing: keyRing)
                    let fleet = try await GatewayHarness.run(microsoft: microsoft, utmstackSocket: socket, sharing: seed, adjust: adjust) { first in
                        try await GatewayHarness.run(microsoft: microsoft, utmstackSocket: socket, sharing: first, adjust: adjust) { _ in
                            let delivered = try await eventually(timeout: .seconds(30)) { webhook.received.count >= 2 }
                            #expect(delivered, "the failed first post is retried")
                            // Many more rounds of both replicas.
                            try await Task.sleep(for: .seconds(2))
                        }
                        return first
                    }
                    #expect(alerts() == ["Gone:secret_expired", "Soon:secret_expiring"])
                    // A replica started again on the same database alerts nothing it alerted before.
                    try await GatewayHarness.run(microsoft: microsoft, utmstackSocket: socket, sharing: fleet, adjust: adjust) { _ in
                        try await Task.sleep(for: .seconds(2))
                    }
                    #expect(alerts() == ["Gone:secret_expired", "Soon:secret_expiring"])
                }
                let posts = webhook.received
                #expect(posts.count == 2, "\(posts)")
                #expect(Set(posts.compactMap { ($0["tenant"] as? [String: Any])?["name"] as? String }) == ["Soon", "Gone"])
                #expect(Set(posts.compactMap { $0["stage"] as? String }).contains("7d"))
                #expect(posts.allSatisfy { ($0["text"] as? String)?.contains("o365-gateway: the Microsoft 365 credential") == true })
            }
        }
    }
}

@Suite struct RegisteredCertificateMatchTests {
    let early = RFC3339.parse("2026-12-20T00:00:00Z")!
    let late = RFC3339.parse("2028-01-01T00:00:00Z")!

    @Test func aCertificateIsMatchedByItsThumbprint() throws {
        let (pem, key) = try makeRSACertificate()
        let certificate = ClientCertificate(certificatePEM: pem, privateKeyPEM: Secret(key))
        let sha1 = try CertificateCredential(certificate).thumbprints[0]
        let hex = sha1.map { String(format: "%02X", $0) }.joined()
        let keys = [
            RegisteredCredential(customKeyIdentifier: Data(repeating: 7, count: 20).base64EncodedString(), endDateTime: late),
            RegisteredCredential(customKeyIdentifier: Data(sha1).base64EncodedString(), endDateTime: early),
        ]
        #expect(SecretExpiryLookup.endDate(of: .certificate(certificate), passwords: [], keys: keys) == early)
        let asHexText = [RegisteredCredential(customKeyIdentifier: Data(hex.utf8).base64EncodedString(), endDateTime: early)]
        #expect(SecretExpiryLookup.endDate(of: .certificate(certificate), passwords: [], keys: asHexText) == early)
        #expect(SecretExpiryLookup.endDate(of: .certificate(certificate), passwords: [], keys: [keys[0]]) == nil)
    }
}
