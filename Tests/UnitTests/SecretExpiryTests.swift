import ActivityAPI
import CredentialCrypto
import Foundation
import GatewayCore
import Testing

@testable import GatewayApp

func reportTenant(
    _ name: String, stated: String? = nil, graph: GraphExpiryFinding? = nil, refusedAt: Date? = nil,
    kind: CredentialKind = .secret, now: Date = Date()
) -> Tenant {
    Tenant(
        id: TenantID(), name: name, microsoftTenantID: UUID(), clientID: UUID(), cloud: .commercial,
        contentTypes: ContentType.allCases, publisherID: nil, utmTenantID: defaultUTMStackTenantID, dataSource: name,
        enabled: true, credentialKind: kind,
        secretExpiry: SecretExpiryEvidence(stated: stated.flatMap(RFC3339.parse), graph: graph, refusedAt: refusedAt),
        createdAt: now, updatedAt: now, version: 1)
}

@Suite struct SecretExpiryReportTests {
    let now = RFC3339.parse("2026-11-25T12:00:00Z")!

    @Test func statusesDaysLeftAndUrgencyOrder() {
        let items = SecretExpiryReport.items(
            [
                reportTenant("Far", stated: "2027-06-01T00:00:00Z"),
                reportTenant("Unknown"),
                reportTenant("Soon", stated: "2026-12-05T12:00:00Z"),
                reportTenant("Edge", stated: "2026-12-25T12:00:00Z"),
                reportTenant("Gone", stated: "2026-11-20T00:00:00Z"),
                reportTenant("JustGone", stated: "2026-11-25T12:00:00Z"),
            ], now: now, withinDays: 30)
        #expect(items.map(\.tenant.name) == ["Gone", "JustGone", "Soon", "Edge", "Unknown", "Far"])
        #expect(items.map(\.status) == [.expired, .expired, .expiring, .expiring, .unknown, .ok])
        #expect(items.map(\.daysLeft) == [-6, 0, 10, 30, nil, 187])
    }

    /// Microsoft's refusal beats Graph, which beats the operator's date; a failed lookup keeps the operator's.
    @Test func theDateInForceComesFromTheBestSource() {
        let graphDate = RFC3339.parse("2026-12-01T00:00:00Z")!
        let found = GraphExpiryFinding(outcome: .found, expiresAt: graphDate, checkedAt: now)
        let onboarding = reportTenant("A", stated: "2027-06-30T00:00:00Z")
        #expect(onboarding.secretExpirySource == .onboarding)
        let fromGraph = reportTenant("B", stated: "2027-06-30T00:00:00Z", graph: found)
        #expect(fromGraph.secretExpiresAt == graphDate && fromGraph.secretExpirySource == .graph)
        let refused = reportTenant("C", stated: "2027-06-30T00:00:00Z", graph: found, refusedAt: now)
        #expect(refused.secretExpiresAt == now && refused.secretExpirySource == .tokenError)
        let denied = reportTenant("D", graph: GraphExpiryFinding(outcome: .permissionDenied, checkedAt: now))
        #expect(denied.secretExpiresAt == nil)
        let item = SecretExpiryReport.item(refused, now: now, withinDays: 30)
        #expect(item.status == .expired && item.advice.contains("Microsoft refuses"))
    }

    @Test func adviceNamesThePermissionThatMakesTheDateExact() {
        let denied = reportTenant(
            "Denied", stated: "2027-06-30T00:00:00Z", graph: GraphExpiryFinding(outcome: .permissionDenied, checkedAt: now))
        let item = SecretExpiryReport.item(denied, now: now, withinDays: 30)
        #expect(item.status == .ok && item.advice.contains("Application.Read.All"))
        let exact = reportTenant(
            "Exact", graph: GraphExpiryFinding(outcome: .found, expiresAt: now.addingTimeInterval(86_400 * 90), checkedAt: now))
        #expect(SecretExpiryReport.item(exact, now: now, withinDays: 30).advice == "Nothing to do now.")
        let soon = reportTenant("Soon", stated: "2026-12-05T12:00:00Z")
        #expect(SecretExpiryReport.item(soon, now: now, withinDays: 30).advice.contains("PUT /api/v1/tenants/\(soon.id)/secret"))
    }

    @Test func graphIsAskedAgainDailyAndAfterAFailureWithinTheHour() {
        #expect(SecretExpiryEvidence().graphLookupDue(now: now))
        let fresh = SecretExpiryEvidence(graph: GraphExpiryFinding(outcome: .found, expiresAt: now, checkedAt: now - 3600))
        #expect(!fresh.graphLookupDue(now: now))
        #expect(fresh.graphLookupDue(now: now + 86_400))
        let failed = SecretExpiryEvidence(graph: GraphExpiryFinding(outcome: .failed, checkedAt: now - 1800))
        #expect(!failed.graphLookupDue(now: now) && failed.graphLookupDue(now: now + 1800))
    }

    @Test func csvEscapesAndDefusesFormulas() {
        let items = SecretExpiryReport.items(
            [reportTenant("=HYPERLINK(\"x\")"), reportTenant("Contoso, Ltd", stated: "2026-12-01T00:00:00Z")],
            now: now, withinDays: 30)
        let lines = SecretExpiryReport.csv(items).split(separator: "\r\n").map(String.init)
        #expect(lines[0] == "id,name,tenantId,clientId,secretExpiresAt,daysLeft,status,source,graphLookup,advice")
        #expect(lines[1].contains(",\"Contoso, Ltd\",") && lines[1].contains(",5,expiring,onboarding,,"))
        #expect(lines[2].contains(",\"'=HYPERLINK(\"\"x\"\")\",") && lines[2].contains(",,unknown,,,"))
    }

    @Test func htmlEscapesEveryTextAndColoursByStatus() {
        let items = SecretExpiryReport.items(
            [reportTenant("<script>alert('x')</script> & Co", stated: "2026-11-20T00:00:00Z")], now: now, withinDays: 30)
        let page = SecretExpiryReport.html(items, generatedAt: now, withinDays: 30)
        #expect(!page.contains("<script>") && page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co"))
        #expect(page.contains(#"<tr class="expired">"#) && page.contains("tr.expired td{background:"))
        #expect(page.contains("1 expired · 0 expiring · 0 unknown · 0 ok"))
    }

    @Test func theTableShowsAdviceUnderRowsThatNeedIt() {
        let items = SecretExpiryReport.items(
            [
                reportTenant("Fine", graph: GraphExpiryFinding(outcome: .found, expiresAt: now + 86_400 * 200, checkedAt: now)),
                reportTenant("Gone", stated: "2026-11-20T00:00:00Z"),
            ], now: now, withinDays: 30)
        let lines = SecretExpiryReport.table(items).split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("STATUS   TENANT"))
        #expect(lines[1].hasPrefix("expired  Gone") && lines[2].hasPrefix("    The client secret has expired"))
        #expect(lines[3].hasPrefix("ok       Fine") && lines.count == 4)
    }
}

@Suite struct ExpiryAlertPolicyTests {
    let expiry = RFC3339.parse("2026-12-31T00:00:00Z")!

    func stage(daysBefore days: Double, _ policy: ExpiryAlertPolicy? = nil) throws -> String? {
        try (policy ?? ExpiryAlertPolicy()).stage(expiresAt: expiry, now: expiry.addingTimeInterval(-days * 86_400))?.name
    }

    @Test func oneStagePerThresholdCrossedThenDailyOnceExpired() throws {
        #expect(try stage(daysBefore: 45) == nil)
        #expect(try stage(daysBefore: 30) == "30d")
        #expect(try stage(daysBefore: 20) == "30d", "the same stage while between thresholds: alerted once")
        #expect(try stage(daysBefore: 13.5) == "14d")
        #expect(try stage(daysBefore: 5) == "7d", "a tenant onboarded 5 days before expiry gets one alert, not three")
        #expect(try stage(daysBefore: 0.5) == "1d")
        #expect(try stage(daysBefore: 0) == "expired:2026-12-31")
        #expect(try stage(daysBefore: -1.5) == "expired:2027-01-01")
        let expired = try ExpiryAlertPolicy().stage(expiresAt: expiry, now: expiry + 10)
        #expect(expired?.code == "secret_expired")
    }

    @Test func thresholdsAreSortedAndValidated() throws {
        let custom = try ExpiryAlertPolicy(thresholds: [7, 60, 2, 7])
        #expect(custom.thresholds == [60, 7, 2])
        #expect(try stage(daysBefore: 50, custom) == "60d")
        for bad in [[], [30, 0], [-1], [3651]] {
            #expect(throws: GatewayError.self, "\(bad)") { try ExpiryAlertPolicy(thresholds: bad) }
        }
    }
}

@Suite struct RegisteredCredentialMatchTests {
    let early = RFC3339.parse("2026-12-20T00:00:00Z")!
    let late = RFC3339.parse("2028-01-01T00:00:00Z")!

    /// An app often has several secrets; one that ends later must not hide the one in use.
    @Test func aSecretIsMatchedByItsHintNeverByTheLatestDate() {
        let passwords = [
            RegisteredCredential(hint: "Xy1", endDateTime: late),
            RegisteredCredential(hint: "abc", endDateTime: early),
            RegisteredCredential(hint: nil, endDateTime: late),
        ]
        let end = SecretExpiryLookup.endDate(of: .clientSecret(Secret("abc~the-rest-of-the-secret")), passwords: passwords, keys: [])
        #expect(end == early)
        #expect(SecretExpiryLookup.endDate(of: .clientSecret(Secret("zzz~other")), passwords: passwords, keys: []) == nil)
        // Two secrets with the same hint cannot be told apart: the earlier end is the one that may break collection.
        let twins = [RegisteredCredential(hint: "abc", endDateTime: late), RegisteredCredential(hint: "abc", endDateTime: early)]
        #expect(SecretExpiryLookup.endDate(of: .clientSecret(Secret("abc~x")), passwords: twins, keys: []) == early)
    }
}

@Suite struct AlertWebhookTests {
    let alert = ExpiryAlert(
        id: 1, tenant: TenantID(), tenantName: "Contoso", microsoftTenantID: UUID(), clientID: UUID(), stage: "7d",
        code: "secret_expiring", expiresAt: RFC3339.parse("2026-12-09T00:00:00Z")!, source: .graph,
        advice: "Create a new one.", utmstackPending: false, webhookPending: true, attempts: 0)
    let now = RFC3339.parse("2026-12-02T00:00:00Z")!

    func object(_ host: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(AlertWebhook.body(alert, host: host, now: now))) as? [String: Any])
    }

    /// Slack and Teams incoming webhooks show `text`; Teams workflows need an Adaptive Card message.
    @Test func bodiesFitSlackTeamsAndEveryoneElse() throws {
        let slack = try object("hooks.slack.com")
        #expect((slack["text"] as? String)?.contains("\"Contoso\" expires in 7 day(s), on 2026-12-09") == true)
        #expect(slack["event"] as? String == "secret_expiring" && slack["daysLeft"] as? Int == 7)
        #expect((slack["tenant"] as? [String: Any])?["name"] as? String == "Contoso")
        let workflow = try object("prod-12.westeurope.logic.azure.com")
        #expect(workflow["type"] as? String == "message")
        let card = try #require((workflow["attachments"] as? [[String: Any]])?.first)
        #expect(card["contentType"] as? String == "application/vnd.microsoft.card.adaptive")
    }

    @Test func onlyHTTPSOrThisMachine() {
        #expect(throws: GatewayError.self) { try AlertWebhook(url: Secret("http://hooks.example.com/x")) }
        #expect(throws: GatewayError.self) { try AlertWebhook(url: Secret("not a url")) }
        #expect((try? AlertWebhook(url: Secret("https://hooks.slack.com/services/T/B/x"))) != nil)
        #expect((try? AlertWebhook(url: Secret("http://127.0.0.1:9999/hook"))) != nil)
    }
}
