import ActivityAPI
import AsyncHTTPClient
import Crypto
import Foundation
import GatewayCore
import MicrosoftSimulator
import NIOCore
import SwiftASN1
import Testing
import X509
import _CryptoExtras

/// The Microsoft client against the simulator over real HTTP.
@Suite(.timeLimit(.minutes(2))) struct MicrosoftClientTests {
    static func frozen(tenants: Int = 1) -> SimulatorConfiguration {
        var configuration = SimulatorConfiguration.generated(tenants: tenants, seed: 7)
        configuration.historyHours = 3
        configuration.blobIntervalSeconds = 300
        configuration.recordsPerBlob = 4
        configuration.pageSize = 5
        configuration.duplicateFraction = 0.3
        configuration.lateFraction = 0.2
        configuration.lateDelaySeconds = 900
        configuration.live = false
        return configuration
    }

    @Test func everyRecordArrivesByteForByteAcrossPagesWithDuplicatesAndLateBlobs() async throws {
        let started = Date()
        try await withSimulator(Self.frozen(), startedAt: started) { simulator, url in
            let client = activityClient()
            let tenant = simulator.configuration.tenants[0]
            let auth = simulatedAuth(tenant, url)
            try await client.ensureSubscriptions(auth, ContentType.allCases)
            #expect(simulator.stats.starts == 5)
            for type in [ContentType.exchange, .dlpAll] {
                let before = simulator.generator.expectedRecordIDs(tenant: 0, contentType: type.rawValue, now: Date())
                let (records, skipped) = try await collectAll(
                    client, auth, type, from: started.addingTimeInterval(-4 * 3600), until: started.addingTimeInterval(60))
                let after = simulator.generator.expectedRecordIDs(tenant: 0, contentType: type.rawValue, now: Date())
                #expect(skipped == 0)
                let expected = before
                #expect(!expected.isEmpty)
                let got = Set(records.map(\.id))
                #expect(before.isSubset(of: got) && got.isSubset(of: after), "every listable record, no other")
                #expect(records.count > expected.count, "duplicate record ids across blobs are delivered by Microsoft")
                #expect(records.allSatisfy { $0.raw.contains("\"SimSequence\":900719925474") }, "large integers intact")
            }
            // Bytes: a blob as the simulator serves it equals the records the client returns, joined.
            let blob = simulator.generator.blobs(
                tenant: 0, contentType: "Audit.Exchange", start: started.addingTimeInterval(-4 * 3600), end: started, now: Date())[0]
            let listed = ContentBlob(
                contentType: "Audit.Exchange", contentID: blob.contentID,
                contentURI: url.absoluteString + "/api/v1.0/\(tenant.tenantId.uuidString.lowercased())/activity/feed/audit/\(blob.contentID)",
                contentCreated: "", contentExpiration: "")
            guard case .records(let records) = try await client.fetchBlob(auth, listed) else {
                Issue.record("blob not fetched"); return
            }
            #expect("[" + records.map(\.raw).joined(separator: ",") + "]" == simulator.generator.blobBody(blob))
        }
    }

    @Test func throttlingAndInjectedFaultsAreRiddenOutWithoutLoss() async throws {
        var configuration = Self.frozen()
        // 2 a second: below what the client asks even on a loaded machine (at 4 a second a run once met no throttling).
        configuration.throttlePerMinute = 120
        configuration.retryAfterSeconds = 1
        configuration.faultEvery = 9
        configuration.historyHours = 1
        configuration.blobIntervalSeconds = 120
        let started = Date()
        try await withSimulator(configuration, startedAt: started) { simulator, url in
            let client = activityClient()
            let auth = simulatedAuth(simulator.configuration.tenants[0], url)
            try await client.ensureSubscriptions(auth, [.sharePoint])
            let before = simulator.generator.expectedRecordIDs(tenant: 0, contentType: "Audit.SharePoint", now: Date())
            let (records, _) = try await collectAll(
                client, auth, .sharePoint, from: started.addingTimeInterval(-4 * 3600), until: started.addingTimeInterval(60))
            let after = simulator.generator.expectedRecordIDs(tenant: 0, contentType: "Audit.SharePoint", now: Date())
            let got = Set(records.map(\.id))
            #expect(!before.isEmpty)
            #expect(before.isSubset(of: got) && got.isSubset(of: after), "nothing lost, nothing invented")
            #expect(simulator.stats.throttled > 0, "the test must actually be throttled")
            #expect(simulator.stats.faults > 0, "the test must actually meet faults")
        }
    }

    @Test func failureModesBecomeStableCodes() async throws {
        var configuration = SimulatorConfiguration.generated(tenants: 4, seed: 9)
        configuration.tenants[1].mode = .expiredSecret
        configuration.tenants[2].mode = .noConsent
        configuration.tenants[3].mode = .appNotFound
        try await withSimulator(configuration) { simulator, url in
            let tenants = simulator.configuration.tenants
            let validator = TenantValidator(
                client: activityClient(), overrides: .init(login: url, manage: url, graph: url), defaultPublisher: nil)
            func codes(_ index: Int, secret: String? = nil, tenantID: UUID? = nil) async -> [String?] {
                var sim = tenants[index]
                if let tenantID { sim.tenantId = tenantID }
                let tenant = Tenant(
                    id: TenantID(), name: sim.name, microsoftTenantID: sim.tenantId, clientID: sim.clientId, cloud: .commercial,
                    contentTypes: [.exchange], publisherID: nil, utmTenantID: "u", dataSource: "d", enabled: true,
                    credentialKind: .secret, secretExpiry: .init(), createdAt: Date(), updatedAt: Date(),
                    version: 1)
                let checks = await validator.validate(tenant, credential: .clientSecret(Secret(secret ?? sim.clientSecret!)))
                return checks.filter { !$0.ok }.map(\.code)
            }
            #expect(await codes(0) == [])
            #expect(await codes(0, secret: "not-the-secret") == ["invalid_client_secret"])
            #expect(await codes(1) == ["client_secret_expired"])
            #expect(await codes(2) == ["missing_activity_feed_permission"])
            #expect(await codes(3) == ["app_not_in_tenant"])
            #expect(await codes(0, tenantID: UUID()) == ["tenant_not_found"])
        }
    }

    @Test(arguments: [ClientCertificate.Algorithm.rs256, .ps256])
    func certificateAssertionsAreAccepted(_ algorithm: ClientCertificate.Algorithm) async throws {
        let (certificatePEM, keyPEM) = try makeRSACertificate()
        var configuration = SimulatorConfiguration.generated(tenants: 1, seed: 11)
        configuration.tenants[0].clientSecret = nil
        configuration.tenants[0].certificatePem = certificatePEM
        try await withSimulator(configuration) { simulator, url in
            let client = activityClient()
            let good = ClientCertificate(certificatePEM: certificatePEM, privateKeyPEM: Secret(keyPEM), algorithm: algorithm)
            let auth = simulatedAuth(simulator.configuration.tenants[0], url, credential: .certificate(good))
            #expect(try await client.listSubscriptions(auth).isEmpty)
            let (otherCertificate, otherKey) = try makeRSACertificate()
            let wrong = ClientCertificate(certificatePEM: otherCertificate, privateKeyPEM: Secret(otherKey), algorithm: algorithm)
            // A fresh client: the first one holds a cached token for this tenant.
            await #expect { _ = try await activityClient().listSubscriptions(simulatedAuth(simulator.configuration.tenants[0], url, credential: .certificate(wrong))) } throws: {
                ($0 as? MicrosoftError)?.code == "certificate_rejected"
            }
        }
    }

    @Test func expiredAndUnknownBlobsAreSkipped() async throws {
        var configuration = Self.frozen()
        configuration.historyHours = 7 * 24 + 2
        configuration.blobIntervalSeconds = 3600
        let started = Date()
        try await withSimulator(configuration, startedAt: started) { simulator, url in
            let client = activityClient()
            let tenant = simulator.configuration.tenants[0]
            let auth = simulatedAuth(tenant, url)
            let old = simulator.generator.blobs(
                tenant: 0, contentType: "Audit.General", start: started.addingTimeInterval(-(7 * 24 + 3) * 3600),
                end: started.addingTimeInterval(-(7 * 24 + 0.5) * 3600), now: started)
            let root = url.absoluteString + "/api/v1.0/\(tenant.tenantId.uuidString.lowercased())/activity/feed/audit/"
            let expired = ContentBlob(contentType: "Audit.General", contentID: old[0].contentID, contentURI: root + old[0].contentID, contentCreated: "", contentExpiration: "")
            let expiredOutcome = try await client.fetchBlob(auth, expired)
            #expect(expiredOutcome == .skipped(reason: "AF20051"))
            let unknown = ContentBlob(contentType: "Audit.General", contentID: "1$2$x$Audit_General$sim0-1", contentURI: root + "1$2$x$Audit_General$sim0-1", contentCreated: "", contentExpiration: "")
            let unknownOutcome = try await client.fetchBlob(auth, unknown)
            #expect(unknownOutcome == .skipped(reason: "AF20050"))
        }
    }

    @Test func theSimulatorSpeaksV1TokensAndGraph() async throws {
        var configuration = SimulatorConfiguration.generated(tenants: 2, seed: 13)
        configuration.tenants[1].graphPermission = false
        try await withSimulator(configuration) { simulator, url in
            let tenant = simulator.configuration.tenants[0]
            func post(_ path: String, _ form: String) async throws -> (Int, [String: Any]) {
                var request = HTTPClientRequest(url: url.absoluteString + path)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                request.body = .bytes(ByteBuffer(string: form))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 1 << 20)
                return (Int(response.status.code), (try JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:])
            }
            let form = "grant_type=client_credentials&client_id=\(tenant.clientId.uuidString.lowercased())&client_secret=\(tenant.clientSecret!)&resource=https://manage.office.com"
            let (status, v1) = try await post("/\(tenant.tenantId.uuidString.lowercased())/oauth2/token", form)
            #expect(status == 200 && v1["expires_in"] is String && v1["expires_on"] is String)
            let (v2Status, v2) = try await post(
                "/\(tenant.tenantId.uuidString.lowercased())/oauth2/v2.0/token", form + "&scope=https://manage.office.com/.default")
            #expect(v2Status == 400 && (v2["error_codes"] as? [Int]) == [901002], "resource is refused on v2")

            let client = activityClient()
            for (index, expectedStatus) in [(0, 200), (1, 403)] {
                let auth = simulatedAuth(simulator.configuration.tenants[index], url)
                let token = try await client.tokens.token(for: auth, audience: .graph)
                var request = HTTPClientRequest(url: url.absoluteString + "/v1.0/applications?$filter=appId%20eq%20'\(auth.clientID.uuidString.lowercased())'")
                request.headers.add(name: "Authorization", value: "Bearer \(token.unredacted)")
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
                #expect(Int(response.status.code) == expectedStatus)
                #expect(body.contains(expectedStatus == 200 ? "\"endDateTime\":\"2027-06-30T00:00:00Z\"" : "Authorization_RequestDenied"))
            }
        }
    }
}

/// A self-signed RSA-2048 certificate and its PKCS#8 key, as PEM.
func makeRSACertificate() throws -> (certificate: String, key: String) {
    let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    let name = try DistinguishedName { CommonName("o365-gateway test app") }
    let now = Date()
    let certificate = try Certificate(
        version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 60,
        notValidAfter: now + 86_400 * 365, issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption,
        extensions: Certificate.Extensions(), issuerPrivateKey: .init(key))
    return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
}
