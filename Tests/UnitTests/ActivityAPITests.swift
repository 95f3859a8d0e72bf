import Foundation
import GatewayCore
import Logging
import Synchronization
import Testing

@testable import ActivityAPI

/// Canned HTTP: a handler per request, and a record of what was sent.
final class CannedExchange: HTTPExchange {
    let handler: @Sendable (MicrosoftRequest) -> MicrosoftResponse
    let sent = Mutex<[MicrosoftRequest]>([])

    init(_ handler: @escaping @Sendable (MicrosoftRequest) -> MicrosoftResponse) { self.handler = handler }

    func send(_ request: MicrosoftRequest) async throws -> MicrosoftResponse {
        sent.withLock { $0.append(request) }
        return handler(request)
    }

    var urls: [String] { sent.withLock { $0.map(\.url) } }
}

func json(_ status: Int, _ body: String, _ headers: [(String, String)] = []) -> MicrosoftResponse {
    MicrosoftResponse(status: status, headers: headers, body: Array(body.utf8))
}

let v2Token = #"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.fixture"}"#
/// The v1 shape from the reference (§1.1): numbers as strings.
let v1Token = #"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1622089429","not_before":"1622085529","resource":"https://manage.office.com","access_token":"eyJ0..."}"#

let fixtureTenant = UUID(uuidString: "41463f53-8812-40f4-890f-865bf6e35190")!
let publisher = UUID(uuidString: "a1b2c3d4-0000-4000-8000-000000000001")!

func auth(_ credential: Credential = .clientSecret(Secret("s3cr3t")), cloud: Cloud = .commercial) -> TenantAuth {
    TenantAuth(
        tenant: TenantID(), microsoftTenantID: fixtureTenant, clientID: UUID(), cloud: cloud, credential: credential,
        endpoints: .forCloud(cloud), publisherID: publisher)
}

/// Records the sleeps of a client (a manual clock: nothing waits).
final class SleepRecorder: Sendable {
    private let sleeps = Mutex<[Double]>([])
    var all: [Double] { sleeps.withLock { $0 } }
    func record(_ seconds: Double) { sleeps.withLock { $0.append(seconds) } }
}

/// A client whose sleeps are recorded, not waited.
func client(_ exchange: CannedExchange, sleeps: SleepRecorder = SleepRecorder(), configuration: ActivityClientConfiguration = .init()) -> ActivityClient {
    ActivityClient(
        exchange: exchange, tokens: TokenProvider(exchange: exchange, logger: Logger(label: "test")),
        configuration: configuration, sleep: { sleeps.record($0) }, logger: Logger(label: "test"))
}

@Suite struct ResponsePolicyTests {
    @Test func theDecisionTable() {
        typealias Row = (Int, String?, Int?, RequestKind, ResponseAction)
        let rows: [Row] = [
            (200, nil, nil, .listContent, .success),
            (403, "AF429", nil, .listContent, .throttled(retryAfterSeconds: nil)),
            (429, nil, 7, .fetchBlob, .throttled(retryAfterSeconds: 7)),
            (429, "AF429", 3, .listSubscriptions, .throttled(retryAfterSeconds: 3)),
            (400, "AF20024", nil, .startSubscription, .success),
            (400, "AF20022", nil, .listContent, .startSubscription),
            (404, "AF20022", nil, .listContent, .startSubscription),
            (400, "AF20023", nil, .listContent, .startSubscription),
            (400, "AF20050", nil, .fetchBlob, .skipBlob(reason: "AF20050")),
            (400, "AF20051", nil, .fetchBlob, .skipBlob(reason: "AF20051")),
            (400, "AF20052", nil, .fetchBlob, .skipBlob(reason: "AF20052")),
            // A 404 without an AF code is a front end or a proxy, not Microsoft saying "gone": retried.
            (404, nil, nil, .fetchBlob, .retry),
            (404, nil, nil, .listContent, .retry),
            (400, "AF20031", nil, .listContent, .restartWindow),
            (500, "AF50000", nil, .listContent, .retry),
            (500, "AF50005", nil, .fetchBlob, .retry),
            (503, nil, nil, .listContent, .retry),
            (408, nil, nil, .listContent, .retry),
            (401, nil, nil, .listContent, .reauthenticate),
        ]
        for (status, code, retryAfter, kind, expected) in rows {
            #expect(ResponsePolicy.decide(status: status, afCode: code, retryAfterSeconds: retryAfter, kind: kind) == expected,
                    "\(status) \(code ?? "-") \(kind)")
        }
        guard case .fail(let missing) = ResponsePolicy.decide(status: 401, afCode: "AF10001", retryAfterSeconds: nil, kind: .listContent) else {
            Issue.record("AF10001 must fail with advice"); return
        }
        #expect(missing.code == "missing_activity_feed_permission" && missing.advice.contains("ActivityFeed.Read"))
        guard case .fail(let window) = ResponsePolicy.decide(status: 400, afCode: "AF20030", retryAfterSeconds: nil, kind: .listContent) else {
            Issue.record("AF20030 must fail"); return
        }
        #expect(window.code == "invalid_time_window")
        // AF20024 outside a start and AF20022 outside a listing are not special.
        #expect(ResponsePolicy.decide(status: 400, afCode: "AF20022", retryAfterSeconds: nil, kind: .fetchBlob) != .startSubscription)
    }
}

@Suite struct TokenTests {
    @Test func bothTokenShapesParse() {
        #expect(TokenResponse.parse(Array(v1Token.utf8))?.expiresIn == 3599)
        #expect(TokenResponse.parse(Array(v2Token.utf8))?.expiresIn == 3599)
        #expect(TokenResponse.parse(Array(#"{"error":"invalid_client"}"#.utf8)) == nil)
    }

    @Test(arguments: [
        (7_000_215, 401, "invalid_client", "invalid_client_secret", "Value"),
        (7_000_222, 401, "invalid_client", "client_secret_expired", "expired"),
        (90_002, 400, "invalid_request", "tenant_not_found", "cloud"),
        (700_016, 400, "unauthorized_client", "app_not_in_tenant", "admin consent"),
    ])
    func tokenErrorsBecomeCodesWithAdvice(_ aadsts: Int, _ status: Int, _ error: String, _ code: String, _ advice: String) {
        // The body shape of the reference (§1.5); the description is not used.
        let body = #"{"error":"\#(error)","error_description":"AADSTS\#(aadsts): whatever.\r\nTrace ID: x","error_codes":[\#(aadsts)],"timestamp":"2023-05-06 06:03:00Z","trace_id":"guid","correlation_id":"guid","error_uri":"https://login.microsoftonline.com/error?code=\#(aadsts)"}"#
        let mapped = tokenError(json(status, body), cloud: .commercial)
        #expect(mapped.code == code)
        #expect(mapped.microsoftCode == "AADSTS\(aadsts)")
        #expect(mapped.advice.contains(advice))
        #expect(mapped.isAuthenticationProblem)
    }

    @Test func tokensAreCachedAndRequestedWithTheV2Scope() async throws {
        let exchange = CannedExchange { _ in json(200, v2Token) }
        let tokens = TokenProvider(exchange: exchange, logger: Logger(label: "test"))
        let tenant = auth(cloud: .gcchigh)
        _ = try await tokens.token(for: tenant)
        _ = try await tokens.token(for: tenant)
        let sent = exchange.sent.withLock { $0 }
        #expect(sent.count == 1)
        #expect(sent[0].url == "https://login.microsoftonline.us/\(fixtureTenant.uuidString.lowercased())/oauth2/v2.0/token")
        let form = String(decoding: sent[0].body ?? [], as: UTF8.self)
        #expect(form.contains("grant_type=client_credentials"))
        #expect(form.contains("scope=https%3A%2F%2Fmanage.office365.us%2F.default"))
        #expect(form.contains("client_secret=s3cr3t"))
    }

    @Test func tokensAreRefreshedBeforeExpiryOnAManualClock() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let exchange = CannedExchange { _ in json(200, v2Token) }
        let tokens = TokenProvider(exchange: exchange, now: { clock.withLock { $0 } }, logger: Logger(label: "test"))
        let tenant = auth()
        _ = try await tokens.token(for: tenant)
        clock.withLock { $0 += 2800 }  // before 80% of 3599 s
        _ = try await tokens.token(for: tenant)
        #expect(exchange.sent.withLock { $0.count } == 1)
        clock.withLock { $0 += 100 }  // past 80%, still before expiry
        _ = try await tokens.token(for: tenant)
        #expect(exchange.sent.withLock { $0.count } == 2)
    }

    /// Lifetimes of any length are cached until 80 % of them (a 60 s token was asked for again at every call).
    @Test(arguments: [30, 60, 90, 600])
    func shortLifetimesAreCachedToo(_ seconds: Int) async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let body = #"{"token_type":"Bearer","expires_in":\#(seconds),"access_token":"eyJ0.short"}"#
        let exchange = CannedExchange { _ in json(200, body) }
        let tokens = TokenProvider(exchange: exchange, now: { clock.withLock { $0 } }, logger: Logger(label: "test"))
        let tenant = auth()
        _ = try await tokens.token(for: tenant)
        clock.withLock { $0 += Double(seconds) * 0.75 }
        _ = try await tokens.token(for: tenant)
        #expect(exchange.sent.withLock { $0.count } == 1, "cached before 80 % of \(seconds) s")
        clock.withLock { $0 += Double(seconds) * 0.1 }
        _ = try await tokens.token(for: tenant)
        #expect(exchange.sent.withLock { $0.count } == 2, "refreshed after 80 % of \(seconds) s")
    }
}

@Suite struct ActivityClientTests {
    let root = "https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed"

    @Test func pagesAreFollowedVerbatimWithThePublisherReappended() async throws {
        // Blobs as in the reference (§3.4), with `$` in the content id; the next page in the documented `api/v1` form.
        let blob1 = #"{"contentType":"Audit.SharePoint","contentId":"492638008028$492638008028$f28ab78ad40140608012736e373933ebspo2015043022$4a81a7c326fc4aed89c62e6039ab833b$04","contentUri":"https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/audit/492638008028$492638008028$f28ab78ad40140608012736e373933ebspo2015043022$4a81a7c326fc4aed89c62e6039ab833b$04","contentCreated":"2015-05-23T17:35:00.000Z","contentExpiration":"2015-05-30T17:35:00.000Z"}"#
        let blob2 = #"{"contentType":"Audit.SharePoint","contentId":"20200702020621634014687$20200702020621634014687$audit_sharepoint$Audit_SharePoint$emea0036","contentUri":"https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/audit/20200702020621634014687$20200702020621634014687$audit_sharepoint$Audit_SharePoint$emea0036","contentCreated":"2015-05-23T17:36:00.000Z","contentExpiration":"2015-05-30T17:36:00.000Z"}"#
        let next1 = "https://manage.office.com/api/v1/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/subscriptions/content?contentType=Audit.SharePoint&startTime=2015-10-01&endTime=2015-10-02&nextPage=2015101900R022885001761"
        let next2 = next1.replacingOccurrences(of: "001761", with: "001762")
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            if request.url.contains("001762") { return json(200, "[]", [("NextPageUrl", "")]) }
            if request.url.contains("001761") { return json(200, "[\(blob2)]", [("Nextpageuri", next2)]) }
            return json(200, "[\(blob1)]", [("NextPageUri", next1)])
        }
        let window = ContentWindow(start: Date(timeIntervalSince1970: 1_432_339_200), end: Date(timeIntervalSince1970: 1_432_425_600))
        let blobs = try await client(exchange).listContent(auth(), ContentType.sharePoint, window: window)
        #expect(blobs.map { $0.contentID } == [
            "492638008028$492638008028$f28ab78ad40140608012736e373933ebspo2015043022$4a81a7c326fc4aed89c62e6039ab833b$04",
            "20200702020621634014687$20200702020621634014687$audit_sharepoint$Audit_SharePoint$emea0036",
        ])
        let urls = exchange.urls.filter { !$0.contains("oauth2") }
        #expect(urls[0] == root + "/subscriptions/content?contentType=Audit.SharePoint&startTime=2015-05-23T00:00:00&endTime=2015-05-24T00:00:00&PublisherIdentifier=\(publisher.uuidString.lowercased())")
        #expect(urls[1] == next1 + "&PublisherIdentifier=\(publisher.uuidString.lowercased())")
        #expect(urls[2] == next2 + "&PublisherIdentifier=\(publisher.uuidString.lowercased())")
    }

    @Test func aRepeatedPageIsAnErrorNotALoop() async throws {
        let next = root + "/subscriptions/content?contentType=Audit.Exchange&nextPage=same"
        let exchange = CannedExchange { request in
            request.url.contains("oauth2") ? json(200, v2Token) : json(200, "[]", [("NextPageUri", next)])
        }
        let window = ContentWindow(start: Date(timeIntervalSince1970: 1_800_000_000), end: Date(timeIntervalSince1970: 1_800_003_600))
        await #expect { _ = try await client(exchange).listContent(auth(), ContentType.exchange, window: window) } throws: {
            ($0 as? MicrosoftError)?.code == "paging_loop"
        }
    }

    @Test func aMissingSubscriptionIsStartedOnceAndTheListingRetried() async throws {
        let started = Mutex(false)
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            if request.url.contains("/subscriptions/start") {
                started.withLock { $0 = true }
                return json(200, #"{"contentType":"Audit.Exchange","status":"enabled"}"#)
            }
            return started.withLock { $0 }
                ? json(200, "[]")
                : json(400, #"{"error":{"code":"AF20022","message":"No subscription found for the specified content type"}}"#)
        }
        let window = ContentWindow(start: Date(timeIntervalSince1970: 1_800_000_000), end: Date(timeIntervalSince1970: 1_800_003_600))
        let activity = client(exchange)
        #expect(try await activity.listContent(auth(), ContentType.exchange, window: window).isEmpty)
        let starts = exchange.sent.withLock { $0.filter { $0.url.contains("/start") } }
        #expect(starts.count == 1 && starts[0].method == "POST")
        #expect(starts[0].url.contains("PublisherIdentifier="))
    }

    @Test func subscriptionStartsAreRateLimitedPerTenant() async throws {
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            if request.url.contains("/list") { return json(200, "[]") }
            return json(400, #"{"error":{"code":"AF20024","message":"The subscription is already enabled. No property change."}}"#)
        }
        let activity = client(exchange)
        let tenant = auth()
        #expect(try await activity.ensureSubscriptions(tenant, [.exchange, .dlpAll]).isEmpty, "AF20024 counts as success")
        let deferred = try await activity.ensureSubscriptions(tenant, [.exchange, .dlpAll])
        #expect(deferred == [.exchange, .dlpAll], "a second round within 15 minutes is deferred")
        #expect(exchange.sent.withLock { $0.filter { $0.url.contains("/start") }.count } == 2)
    }

    @Test func oneRefusedTokenGetsOneFreshTokenThenTheCallFails() async throws {
        let exchange = CannedExchange { request in
            request.url.contains("oauth2") ? json(200, v2Token) : json(401, #"{"Message":"Authorization has been denied for this request."}"#)
        }
        await #expect { _ = try await client(exchange).listSubscriptions(auth()) } throws: {
            ($0 as? MicrosoftError)?.code == "unauthorized"
        }
        let sent = exchange.urls
        #expect(sent.filter { $0.contains("oauth2") }.count == 2)
        #expect(sent.filter { $0.contains("/list") }.count == 2)
    }

    @Test func throttlingHonoursRetryAfterElseBacksOff() async throws {
        let calls = Mutex(0)
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            let n = calls.withLock { $0 += 1; return $0 }
            switch n {
            case 1: return json(429, #"{"error":{"code":"AF429","message":"Too many requests."}}"#, [("Retry-After", "7")])
            case 2: return json(403, #"{"error":{"code":"AF429","message":"Too many requests. Method=GET, PublisherId=x"}}"#)
            case 3: return json(500, #"{"error":{"code":"AF50000","message":"An internal error occurred."}}"#)
            default: return json(200, "[]")
            }
        }
        let sleeps = SleepRecorder()
        #expect(try await client(exchange, sleeps: sleeps).listSubscriptions(auth()).isEmpty)
        let waited = sleeps.all
        #expect(waited.count == 3)
        #expect(waited[0] == 7, "Retry-After is honoured")
        #expect(waited[1] >= 2 && waited[1] <= 4, "exponential backoff with jitter (2 s base) when there is no Retry-After")
    }

    @Test func transientFaultsGiveUpAfterTheRetryLimitWithoutSkipping() async throws {
        let exchange = CannedExchange { request in
            request.url.contains("oauth2") ? json(200, v2Token) : json(503, "")
        }
        let sleeps = SleepRecorder()
        await #expect {
            _ = try await client(exchange, sleeps: sleeps, configuration: .init(maxRetries: 3)).listSubscriptions(auth())
        } throws: { ($0 as? MicrosoftError)?.code == "microsoft_unavailable" }
        #expect(sleeps.all.count == 3)
    }

    @Test func expiredAndMissingBlobsAreSkippedAndCounted() async throws {
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            return json(400, #"{"error":{"code":"AF20051","message":"Content requested with the key x has already expired."}}"#)
        }
        let blob = ContentBlob(contentType: "Audit.Exchange", contentID: "a$b", contentURI: root + "/audit/a$b", contentCreated: "", contentExpiration: "")
        #expect(try await client(exchange).fetchBlob(auth(), blob) == .skipped(reason: "AF20051"))
        #expect(exchange.urls.last == root + "/audit/a$b?PublisherIdentifier=\(publisher.uuidString.lowercased())")
    }
}

/// Only what Microsoft says is gone is skipped; everything else fails the poll (retried, checkpoint unmoved).
@Suite struct SkipOnlyWhatIsGoneTests {
    let root = "https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed"
    let blob = ContentBlob(
        contentType: "Audit.Exchange", contentID: "a$b",
        contentURI: "https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/audit/a$b",
        contentCreated: "2026-11-30T10:00:00.000Z", contentExpiration: "2099-12-07T10:00:00.000Z")

    /// The reported failure: a plain 404 twice, then the blob. Before, it was skipped and its records lost.
    @Test func aPlain404IsRetriedAndTheBlobArrives() async throws {
        let calls = Mutex(0)
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            let n = calls.withLock { $0 += 1; return $0 }
            if n <= 2 { return json(404, #"{"Message":"No HTTP resource was found that matches the request URI."}"#) }
            return json(200, #"[{"Id":"r1","CreationTime":"2026-11-30T10:00:00"}]"#)
        }
        let sleeps = SleepRecorder()
        guard case .records(let records) = try await client(exchange, sleeps: sleeps).fetchBlob(auth(), blob) else {
            Issue.record("the blob must be fetched, not skipped"); return
        }
        #expect(records.map(\.id) == ["r1"])
        #expect(sleeps.all.count == 2, "backed off twice")
    }

    @Test func aPersistentPlain404FailsThePollWithItsReasonInsteadOfSkipping() async throws {
        let exchange = CannedExchange { request in
            request.url.contains("oauth2")
                ? json(200, v2Token) : json(404, #"{"Message":"No HTTP resource was found that matches the request URI."}"#)
        }
        await #expect {
            _ = try await client(exchange, configuration: .init(maxRetries: 2)).fetchBlob(auth(), blob)
        } throws: { ($0 as? MicrosoftError)?.code == "microsoft_not_found" }
    }

    @Test func aBlobPastItsExpirationIsSkippedWithoutAsking() async throws {
        let exchange = CannedExchange { _ in json(500, "") }
        var expired = blob
        expired.contentExpiration = "2020-01-01T00:00:00.000Z"
        #expect(try await client(exchange).fetchBlob(auth(), expired) == .skipped(reason: "expired"))
        #expect(exchange.urls.isEmpty)
    }

    @Test func aMalformedBodyIsFetchedAgainThenFails() async throws {
        let exchange = CannedExchange { request in request.url.contains("oauth2") ? json(200, v2Token) : json(200, "[{\"Id\":") }
        await #expect {
            _ = try await client(exchange, configuration: .init(maxRetries: 2)).fetchBlob(auth(), blob)
        } throws: { ($0 as? MicrosoftError)?.code == "malformed_blob" }
        #expect(exchange.urls.filter { !$0.contains("oauth2") }.count == 3)
    }

    @Test func listingEntriesWithoutIdOrURIAreAnError() async throws {
        let window = ContentWindow(start: Date(timeIntervalSinceNow: -3600), end: Date(timeIntervalSinceNow: -60))
        for entry in [#"{"contentUri":"\#(root)/audit/x$y"}"#, #"{"contentId":"x$y"}"#, #"{"contentId":"","contentUri":"u"}"#] {
            let exchange = CannedExchange { request in
                request.url.contains("oauth2") ? json(200, v2Token) : json(200, "[\(entry)]")
            }
            await #expect {
                _ = try await client(exchange).listContent(auth(), .exchange, window: window)
            } throws: { ($0 as? MicrosoftError)?.code == "unexpected_response" }
        }
    }

    /// A `NextPageUri` or `contentUri` on another host is never followed: the bearer token stays on the manage host.
    @Test func followUpURLsOnAnotherHostAreRefusedAndGetNoToken() async throws {
        let window = ContentWindow(start: Date(timeIntervalSinceNow: -3600), end: Date(timeIntervalSinceNow: -60))
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            return json(200, "[]", [("NextPageUri", "https://evil.example.com/api/v1/x/activity/feed/subscriptions/content?nextPage=2")])
        }
        await #expect {
            _ = try await client(exchange).listContent(auth(), .exchange, window: window)
        } throws: { ($0 as? MicrosoftError)?.code == "untrusted_url" }
        #expect(!exchange.urls.contains { $0.contains("evil.example.com") })
        var foreign = blob
        foreign.contentURI = "https://manage.office.com.evil.example/api/v1.0/x/activity/feed/audit/a$b"
        await #expect { _ = try await client(exchange).fetchBlob(auth(), foreign) } throws: {
            ($0 as? MicrosoftError)?.code == "untrusted_url"
        }
        #expect(!exchange.urls.contains { $0.contains("evil.example") })
        #expect(ActivityClient.isOnHost("https://MANAGE.office.com:443/api", URL(string: "https://manage.office.com")!))
        #expect(!ActivityClient.isOnHost("http://manage.office.com/api", URL(string: "https://manage.office.com")!))
        #expect(!ActivityClient.isOnHost("https://manage.office.com:8443/api", URL(string: "https://manage.office.com")!))
    }

    @Test func retryAfterIsCapped() async throws {
        let calls = Mutex(0)
        let exchange = CannedExchange { request in
            if request.url.contains("oauth2") { return json(200, v2Token) }
            let n = calls.withLock { $0 += 1; return $0 }
            return n == 1 ? json(429, #"{"error":{"code":"AF429"}}"#, [("Retry-After", "86400")]) : json(200, "[]")
        }
        let sleeps = SleepRecorder()
        _ = try await client(exchange, sleeps: sleeps).listSubscriptions(auth())
        #expect(sleeps.all == [ActivityClient.maxRetryAfterSeconds])
    }
}

@Suite struct BlobParserTests {
    @Test func recordsKeepTheirExactBytes() throws {
        let one = #"{"CreationTime":"2015-06-29T20:03:19","Id":"80c76bd2-9d81-4c57-a97a-accfc3443dca","Operation":"PasswordLogonInitialAuthUsingPassword","OrganizationId":"41463f53-8812-40f4-890f-865bf6e35190","RecordType":9,"ResultStatus":"failed","UserKey":"1153801120595142@contoso.onmicrosoft.com","UserType":0,"Workload":"AzureActiveDirectory","ClientIP":"134.170.188.221","ObjectId":"admin@contoso.onmicrosoft.com","UserId":"admin@contoso.onmicrosoft.com","AzureActiveDirectoryEventType":0,"ExtendedProperties":[{"Name":"LoginError","Value":"-2147217390;PP_E_BAD_PASSWORD;The entered and stored passwords do not match."}],"Big":123456789012345678901234567890,"Nested":{"Id":"not-me","Arr":[1,{"x":"]}\"[{"}]}}"#
        let two = #"{ "Id" : "a\"b" , "CreationTime":"2015-06-29T20:03:20.5Z","Escaped":"\u00e9\n" }"#
        let blob = "\u{FEFF}[\n  " + one + " ,\n" + two + "\n]\n"
        let records = try BlobParser.records(Array(blob.utf8))
        #expect(records.count == 2)
        #expect(records[0].raw == one)
        #expect(records[0].id == "80c76bd2-9d81-4c57-a97a-accfc3443dca")
        #expect(records[0].creationTime == "2015-06-29T20:03:19")
        #expect(records[1].raw == two)
        #expect(records[1].id == "a\"b")
        #expect(try BlobParser.records(Array("[]".utf8)).isEmpty)
    }

    @Test(arguments: ["", "{}", "[{]", "[{\"a\":1}", "[{\"a\":1},]", "[{\"a\":\"unterminated}]", "[1]"])
    func malformedBlobsAreRejected(_ text: String) {
        #expect(throws: BlobFormatError.self) { try BlobParser.records(Array(text.utf8)) }
    }

    @Test func nestingIsBoundedInsteadOfRecursingWithoutLimit() throws {
        let deep = "[{\"Id\":\"x\",\"A\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}]"
        #expect(throws: BlobFormatError.self) { try BlobParser.records(Array(deep.utf8)) }
        let fine = "[{\"Id\":\"x\",\"A\":" + String(repeating: "{\"b\":", count: 40) + "1" + String(repeating: "}", count: 40) + "}]"
        #expect(try BlobParser.records(Array(fine.utf8)).count == 1)
    }
}

@Suite struct PlanningTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func windowsAreAtMost24HoursInsideSevenDaysEndingBeforeNow() {
        let windows = ContentWindows.plan(from: now.addingTimeInterval(-10 * 86_400), now: now, endLag: 60)
        #expect(windows.first!.start == now.addingTimeInterval(-ContentWindows.oldestStart))
        #expect(windows.last!.end == now.addingTimeInterval(-60))
        #expect(windows.allSatisfy { $0.end.timeIntervalSince($0.start) <= 86_400 && $0.start < $0.end })
        #expect(zip(windows, windows.dropFirst()).allSatisfy { $0.end == $1.start })
        #expect(ContentWindows.plan(from: now, now: now).isEmpty)
        // Ends are whole seconds, so a poll within the second of the last window's end lists nothing (sent, the
        // window would be empty at Microsoft's precision: AF20055).
        let fractional = ContentWindows.plan(from: now.addingTimeInterval(-120), now: now.addingTimeInterval(0.75), endLag: 60)
        #expect(fractional.last!.end == now.addingTimeInterval(-60))
        #expect(ContentWindows.plan(from: now.addingTimeInterval(-60), now: now.addingTimeInterval(0.9), endLag: 60).isEmpty)
        #expect(ContentWindows.format(Date(timeIntervalSince1970: 1_432_402_500.75)) == "2015-05-23T17:35:00")
    }

    @Test func theRequestBudgetSpacesRequests() {
        var budget = RequestBudget(perMinute: 60, burst: 2, now: 0)
        #expect(budget.take(now: 0) == nil)
        #expect(budget.take(now: 0) == nil)
        let wait = budget.take(now: 0)
        #expect(wait != nil && abs(wait! - 1) < 0.001)
        #expect(budget.take(now: 1) == nil)
        budget.drain(now: 5)
        #expect(budget.take(now: 5) != nil)
    }

    /// A backfill spends the tenant's budget on blobs; listings (the polls of its other content types) must still
    /// get through at once.
    @Test func blobFetchesLeaveRequestsForListings() {
        var budget = RequestBudget(perMinute: 60, burst: 10, now: 0)
        #expect(budget.reserved == 5)
        for _ in 0..<5 { #expect(budget.take(now: 0, priority: .blob) == nil) }
        let wait = budget.take(now: 0, priority: .blob)
        #expect(wait != nil && abs(wait! - 1) < 0.001, "a blob waits for the sixth request")
        for _ in 0..<5 { #expect(budget.take(now: 0, priority: .listing) == nil) }
        #expect(budget.take(now: 0, priority: .listing) != nil)
        // Refilled while blobs wait: the reserve comes back first.
        #expect(budget.take(now: 5, priority: .blob) != nil, "5 s refill 5 requests: the reserve, not for blobs")
        #expect(budget.take(now: 6, priority: .blob) == nil)
    }

    @Test func theDefaultBurstIsTwoSecondsWorth() {
        #expect(RequestBudget(perMinute: 1_800, now: 0).burst == 60)
        #expect(RequestBudget(perMinute: 60, now: 0).burst == 6)
    }

    @Test func endpointsPerCloudAndOverrides() throws {
        #expect(MicrosoftEndpoints.forCloud(.gcc).manage.absoluteString == "https://manage-gcc.office.com")
        #expect(MicrosoftEndpoints.forCloud(.dod).login.absoluteString == "https://login.microsoftonline.us")
        #expect(MicrosoftEndpoints.forCloud(.dod).scope == "https://manage.protection.apps.mil/.default")
        #expect(MicrosoftEndpoints.forCloud(.china).isExperimental)
        let overrides = MicrosoftEndpoints.Overrides(
            login: MicrosoftEndpoints.Overrides.host(parsing: "http://127.0.0.1:9000/"),
            manage: MicrosoftEndpoints.Overrides.host(parsing: "http://127.0.0.1:9000"))
        let endpoints = MicrosoftEndpoints.forCloud(.gcchigh, overrides: overrides)
        #expect(endpoints.feedRoot(tenant: fixtureTenant) == "http://127.0.0.1:9000/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed")
        #expect(endpoints.scope == "https://manage.office365.us/.default", "the scope names the real cloud")
        #expect(MicrosoftEndpoints.Overrides.host(parsing: "ftp://x") == nil)
        #expect(MicrosoftEndpoints.Overrides.host(parsing: "127.0.0.1:9000") == nil)
    }
}

@Suite struct SecretExpiryLookupTests {
    func lookup(_ exchange: CannedExchange, sleeps: SleepRecorder = SleepRecorder()) -> SecretExpiryLookup {
        SecretExpiryLookup(
            exchange: exchange, tokens: TokenProvider(exchange: exchange, logger: Logger(label: "test")),
            sleep: { sleeps.record($0) }, logger: Logger(label: "test"))
    }

    static let registration = #"{"value":[{"appId":"x","passwordCredentials":[{"hint":"s3c","endDateTime":"2027-03-01T00:00:00Z"},{"hint":"zzz","endDateTime":"2030-01-01T00:00:00Z"}],"keyCredentials":[]}]}"#

    /// Each cloud's own Graph host, with a token for that Graph audience: the bearer token goes nowhere else.
    @Test(arguments: [
        (Cloud.commercial, "https://graph.microsoft.com", "https%3A%2F%2Fgraph.microsoft.com%2F.default"),
        (.gcchigh, "https://graph.microsoft.us", "https%3A%2F%2Fgraph.microsoft.us%2F.default"),
        (.dod, "https://dod-graph.microsoft.us", "https%3A%2F%2Fdod-graph.microsoft.us%2F.default"),
        (.china, "https://microsoftgraph.chinacloudapi.cn", "https%3A%2F%2Fmicrosoftgraph.chinacloudapi.cn%2F.default"),
    ])
    func eachCloudAsksItsOwnGraph(_ cloud: Cloud, _ host: String, _ scope: String) async throws {
        let exchange = CannedExchange { request in
            request.method == "POST" ? json(200, v2Token) : json(200, Self.registration)
        }
        let finding = await lookup(exchange).lookup(auth(cloud: cloud))
        #expect(finding.outcome == .found && finding.expiresAt == RFC3339.parse("2027-03-01T00:00:00Z"))
        let sent = exchange.sent.withLock { $0 }
        #expect(String(decoding: sent[0].body ?? [], as: UTF8.self).contains("scope=\(scope)"))
        #expect(sent[1].url.hasPrefix("\(host)/v1.0/applications?$filter=appId%20eq%20%27"))
        #expect(sent[1].url.hasSuffix("&$select=id,appId,passwordCredentials,keyCredentials"))
    }

    @Test func deniedEmptyThrottledAndBrokenAnswersBecomeOutcomes() async throws {
        func outcome(_ answer: MicrosoftResponse) async -> GraphExpiryFinding.Outcome {
            await lookup(CannedExchange { $0.method == "POST" ? json(200, v2Token) : answer }).lookup(auth()).outcome
        }
        #expect(await outcome(json(403, #"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#)) == .permissionDenied)
        #expect(await outcome(json(200, #"{"value":[]}"#)) == .applicationNotFound)
        #expect(await outcome(json(200, #"{"value":[{"passwordCredentials":[{"hint":"abc","endDateTime":"2027-01-01T00:00:00Z"}]}]}"#)) == .credentialNotFound)
        #expect(await outcome(json(200, "<html>")) == .failed)
        let sleeps = SleepRecorder()
        let throttled = CannedExchange { $0.method == "POST" ? json(200, v2Token) : json(429, "{}", [("Retry-After", "7")]) }
        #expect(await lookup(throttled, sleeps: sleeps).lookup(auth()).outcome == .failed)
        #expect(sleeps.all == [7, 7, 7], "Retry-After is honoured, three times")
    }
}
