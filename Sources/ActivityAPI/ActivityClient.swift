import Foundation
import GatewayCore
import Logging
import Metrics
import Synchronization

/// A blob listed by `/subscriptions/content`.
public struct ContentBlob: Sendable, Equatable {
    public var contentType: String
    public var contentID: String
    public var contentURI: String
    public var contentCreated: String
    public var contentExpiration: String

    public init(contentType: String, contentID: String, contentURI: String, contentCreated: String, contentExpiration: String) {
        self.contentType = contentType
        self.contentID = contentID
        self.contentURI = contentURI
        self.contentCreated = contentCreated
        self.contentExpiration = contentExpiration
    }
}

public struct SubscriptionState: Sendable, Equatable {
    public var contentType: String
    public var enabled: Bool
}

public enum BlobOutcome: Sendable, Equatable {
    case records([AuditRecord])
    /// Gone (AF20050), expired (AF20051) or malformed id (AF20052): skipped and counted, never retried.
    case skipped(reason: String)
}

/// Tunables of the Microsoft client.
public struct ActivityClientConfiguration: Sendable {
    /// Requests a minute per tenant, shared by its content types.
    public var requestsPerMinute: Int
    /// Retries of a transient fault before the call fails (the poll then retries later; nothing is skipped).
    public var maxRetries: Int
    /// Throttled answers tolerated in a row before the call fails.
    public var maxThrottledRetries: Int
    /// At most one round of subscription starts per tenant in this interval.
    public var subscriptionStartInterval: TimeInterval
    /// Pages followed at most for one window (a guard against a server that never stops paging).
    public var maxPages: Int

    public init(
        requestsPerMinute: Int = 1_800, maxRetries: Int = 5, maxThrottledRetries: Int = 20,
        subscriptionStartInterval: TimeInterval = 15 * 60, maxPages: Int = 10_000
    ) {
        self.requestsPerMinute = requestsPerMinute
        self.maxRetries = maxRetries
        self.maxThrottledRetries = maxThrottledRetries
        self.subscriptionStartInterval = subscriptionStartInterval
        self.maxPages = maxPages
    }
}

/// The Office 365 Management Activity API, spoken carefully (reference §3, §5, §7): `PublisherIdentifier` on every
/// call, pages followed verbatim, a per-tenant request budget, throttling and faults retried with backoff, one
/// fresh token after a 401, AF20024 taken as success, and subscription starts rate-limited per tenant.
public final class ActivityClient: Sendable {
    let exchange: any HTTPExchange
    public let tokens: TokenProvider
    let configuration: ActivityClientConfiguration
    let sleep: @Sendable (Double) async throws -> Void
    let now: @Sendable () -> Date
    let logger: Logger
    private let state: Mutex<State>

    struct State {
        var budgets: [TenantID: RequestBudget] = [:]
        var lastStartRound: [TenantID: Date] = [:]
        /// A start round in progress, which the tenant's other collectors wait for instead of failing.
        var roundInProgress: [TenantID: Task<Void, any Error>] = [:]
        /// When the tenant's subscriptions were last seen, and which types were enabled then.
        var subscriptionsEnabled: [TenantID: (at: Date, types: Set<ContentType>)] = [:]
    }

    public init(
        exchange: any HTTPExchange, tokens: TokenProvider, configuration: ActivityClientConfiguration = .init(),
        now: @escaping @Sendable () -> Date = { Date() },
        sleep: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .milliseconds(Int($0 * 1000))) },
        logger: Logger
    ) {
        self.exchange = exchange
        self.tokens = tokens
        self.configuration = configuration
        self.now = now
        self.sleep = sleep
        self.logger = logger
        self.state = Mutex(State())
    }

    // MARK: Operations

    public func listSubscriptions(_ auth: TenantAuth) async throws -> [SubscriptionState] {
        let (response, _) = try await perform(auth, .listSubscriptions, url: auth.endpoints.feedRoot(tenant: auth.microsoftTenantID) + "/subscriptions/list")
        guard let items = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [[String: Any]] else {
            throw MicrosoftError(code: "unexpected_response", advice: "Microsoft answered the subscription list with something else than a JSON array.")
        }
        return items.compactMap { item in
            guard let type = item["contentType"] as? String else { return nil }
            return SubscriptionState(contentType: type, enabled: (item["status"] as? String)?.lowercased() == "enabled")
        }
    }

    /// Starts `contentType`; "already enabled" (AF20024) is success.
    public func startSubscription(_ auth: TenantAuth, _ contentType: ContentType) async throws {
        let url = auth.endpoints.feedRoot(tenant: auth.microsoftTenantID) + "/subscriptions/start?contentType=\(contentType.rawValue)"
        _ = try await perform(auth, .startSubscription, url: url, method: "POST")
    }

    /// Makes sure each of `wanted` is subscribed and enabled, starting the missing or disabled ones in one round.
    /// At most one round per tenant per `subscriptionStartInterval`; returns the types still not enabled.
    @discardableResult
    ///
    /// A tenant whose wanted types were all enabled is not asked again for `subscriptionStartInterval`: its five
    /// collectors polling every minute would otherwise spend five requests of its budget a minute on it. A
    /// subscription disabled meanwhile is still caught, by the content listing's AF20022/AF20021 answer.
    public func ensureSubscriptions(_ auth: TenantAuth, _ wanted: [ContentType]) async throws -> [ContentType] {
        let now = now()
        let known = state.withLock { state -> Bool in
            guard let checked = state.subscriptionsEnabled[auth.tenant],
                now.timeIntervalSince(checked.at) < configuration.subscriptionStartInterval
            else { return false }
            return wanted.allSatisfy(checked.types.contains)
        }
        if known { return [] }
        let enabled = Set(try await listSubscriptions(auth).filter(\.enabled).compactMap { ContentType(rawValue: $0.contentType) })
        let missing = wanted.filter { !enabled.contains($0) }
        guard !missing.isEmpty else {
            state.withLock { $0.subscriptionsEnabled[auth.tenant] = (now, enabled) }
            return []
        }
        return try await startRound(auth, missing) ? [] : missing
    }

    /// Joins the tenant's start round in progress, or starts one if the 15-minute rule allows (one decision under
    /// one lock, so a tenant's collectors wait for the round instead of failing). False when neither was possible.
    private func startRound(_ auth: TenantAuth, _ missing: [ContentType]) async throws -> Bool {
        let now = now()
        let round: Task<Void, any Error>? = state.withLock { state in
            if let round = state.roundInProgress[auth.tenant] { return round }
            if let last = state.lastStartRound[auth.tenant], now.timeIntervalSince(last) < configuration.subscriptionStartInterval {
                return nil
            }
            state.lastStartRound[auth.tenant] = now
            let round = Task {
                defer { _ = self.state.withLock { $0.roundInProgress.removeValue(forKey: auth.tenant) } }
                for type in missing {
                    try await self.startSubscription(auth, type)
                    self.logger.info("subscription started", metadata: ["tenant": "\(auth.tenant)", "contentType": "\(type.rawValue)"])
                }
            }
            state.roundInProgress[auth.tenant] = round
            return round
        }
        guard let round else { return false }
        try await round.value
        return true
    }

    /// Every blob whose `contentCreated` lies in `window`, following `NextPageUri` until it is absent. When the
    /// subscription is missing or disabled, starts it (rate-limited) and lists again.
    public func listContent(_ auth: TenantAuth, _ contentType: ContentType, window: ContentWindow) async throws -> [ContentBlob] {
        let first = auth.endpoints.feedRoot(tenant: auth.microsoftTenantID)
            + "/subscriptions/content?contentType=\(contentType.rawValue)"
            + "&startTime=\(ContentWindows.format(window.start))&endTime=\(ContentWindows.format(window.end))"
        var restarts = 0
        var startedSubscription = false
        listing: while true {
            var blobs: [ContentBlob] = []
            var seen: Set<String> = []
            var url = first
            for _ in 0..<configuration.maxPages {
                let (response, action) = try await perform(auth, .listContent, url: url)
                switch action {
                case .startSubscription:
                    _ = state.withLock { $0.subscriptionsEnabled.removeValue(forKey: auth.tenant) }
                    guard !startedSubscription, try await startRound(auth, [contentType]) else {
                        throw MicrosoftError.fromAPIError(afCode: Self.afCode(response.body), httpStatus: response.status)
                    }
                    startedSubscription = true
                    continue listing
                case .restartWindow:
                    restarts += 1
                    guard restarts <= 3 else {
                        throw MicrosoftError(code: "paging_failed", advice: "Microsoft kept refusing its own next-page token; the window is listed again later.")
                    }
                    continue listing
                default:
                    break
                }
                blobs += try Self.parseBlobs(response.body)
                guard let next = response.header("NextPageUri") ?? response.header("NextPageUrl"), !next.isEmpty else {
                    return blobs
                }
                guard seen.insert(next).inserted, next != url else {
                    throw MicrosoftError(code: "paging_loop", advice: "Microsoft returned the same next page twice; the window is listed again later.")
                }
                url = next
            }
            throw MicrosoftError(code: "paging_loop", advice: "More than \(configuration.maxPages) pages for one window; the window is listed again later.")
        }
    }

    /// Retrieves a blob: the exact bytes of each record with its `Id` and `CreationTime`. A blob is skipped only
    /// when Microsoft says it is gone (AF20050, AF20051, AF20052) or it is past its `contentExpiration`; every other
    /// failure throws, so the poll is retried and the checkpoint stays before it.
    ///
    /// - Parameter memory: where the body's bytes are counted (``ResponseMemoryBudget``); the caller releases it once
    ///   the records are handed on.
    public func fetchBlob(_ auth: TenantAuth, _ blob: ContentBlob, memory: MemoryClaim? = nil) async throws -> BlobOutcome {
        if let expiration = RFC3339.parse(blob.contentExpiration), expiration <= now() {
            return skip(auth, blob, reason: "expired")
        }
        var attempt = 0
        while true {
            let response: MicrosoftResponse
            let action: ResponseAction
            do {
                (response, action) = try await perform(auth, .fetchBlob, url: blob.contentURI, memory: memory)
            } catch let error as ResponseTooLarge {
                throw MicrosoftError(
                    code: "blob_too_large",
                    advice: "Microsoft served a blob over \(error.limit) bytes; raise O365GW_MAX_BLOB_BYTES. The blob is not skipped: collection of this content type waits for it.")
            }
            if case .skipBlob(let reason) = action { return skip(auth, blob, reason: reason) }
            do {
                return .records(try BlobParser.records(response.body))
            } catch let error as BlobFormatError {
                // A truncated or garbled body: fetch again; never skip silently.
                guard attempt < configuration.maxRetries else {
                    throw MicrosoftError(code: "malformed_blob", advice: "\(error); the blob is fetched again at the next poll.")
                }
                try await sleep(RetryBackoff.delay(attempt: attempt))
                attempt += 1
            }
        }
    }

    /// What Microsoft said is gone is skipped with a trace: a warning naming the blob, the metric, and the unit's
    /// `blobsSkipped` count.
    private func skip(_ auth: TenantAuth, _ blob: ContentBlob, reason: String) -> BlobOutcome {
        Counter(label: "o365gw_microsoft_blobs_skipped_total", dimensions: [("reason", reason)]).increment()
        logger.warning(
            "blob skipped: Microsoft no longer serves it",
            metadata: [
                "tenant": "\(auth.tenant)", "reason": "\(reason)", "contentId": "\(blob.contentID)",
                "contentCreated": "\(blob.contentCreated)",
            ])
        return .skipped(reason: reason)
    }

    // MARK: The request loop

    /// Sends a request under the tenant's budget and the retry rules. Returns the response with the action for
    /// the caller (`.success`, `.startSubscription`, `.skipBlob`, `.restartWindow`); throws for the rest.
    func perform(
        _ auth: TenantAuth, _ kind: RequestKind, url: String, method: String = "GET", memory: MemoryClaim? = nil
    ) async throws -> (MicrosoftResponse, ResponseAction) {
        // `NextPageUri` and `contentUri` come from Microsoft's answers; the bearer token goes to the tenant's manage
        // host and nowhere else.
        guard Self.isOnHost(url, auth.endpoints.manage) else {
            throw MicrosoftError(
                code: "untrusted_url",
                advice: "Microsoft's answer pointed to \(Self.hostDescription(url)), not the tenant's Activity API host "
                    + "\(Self.hostDescription(auth.endpoints.manage.absoluteString)); the gateway sends the tenant's token "
                    + "only there, so this page or blob is not fetched (the window is retried).")
        }
        let target = Self.withPublisher(url, auth.publisherID)
        var retries = 0
        var throttled = 0
        var refreshed = false
        while true {
            try await takeBudget(auth.tenant, kind == .fetchBlob ? .blob : .listing)
            let token = try await tokens.token(for: auth, forceRefresh: false)
            var headers = [("Authorization", "Bearer \(token.unredacted)"), ("Accept", "application/json")]
            if method == "POST" { headers.append(("Content-Type", "application/json")) }
            let request = MicrosoftRequest(
                method: method, url: target, headers: headers, body: method == "POST" ? Array("{}".utf8) : nil, memory: memory)
            let response: MicrosoftResponse
            do {
                response = try await exchange.send(request)
            } catch let failure as TransportFailure {
                guard retries < configuration.maxRetries else {
                    throw MicrosoftError(code: "microsoft_unreachable", advice: "The Activity API cannot be reached (\(failure)); the gateway retries later.")
                }
                try await sleep(RetryBackoff.delay(attempt: retries))
                retries += 1
                continue
            }
            // Only error bodies carry a code; a blob body can be megabytes and is never parsed here.
            let afCode = (200..<300).contains(response.status) ? nil : Self.afCode(response.body)
            RequestMetrics.count(kind, status: response.status)
            let action = ResponsePolicy.decide(
                status: response.status, afCode: afCode, retryAfterSeconds: response.header("Retry-After").flatMap(Int.init), kind: kind)
            switch action {
            case .success, .startSubscription, .skipBlob, .restartWindow:
                return (response, action)
            case .throttled(let retryAfter):
                throttled += 1
                guard throttled <= configuration.maxThrottledRetries else {
                    throw MicrosoftError.fromAPIError(afCode: "AF429", httpStatus: response.status)
                }
                drainBudget(auth.tenant)
                Counter(label: "o365gw_microsoft_throttled_total").increment()
                logger.debug("throttled by Microsoft", metadata: ["tenant": "\(auth.tenant)", "retryAfter": "\(retryAfter.map(String.init) ?? "-")"])
                // Microsoft does not document Retry-After; a value is honoured up to the backoff's own cap.
                let backoff = RetryBackoff.delay(attempt: throttled - 1, base: 2, cap: Self.maxRetryAfterSeconds)
                try await sleep(retryAfter.map { min(Double($0), Self.maxRetryAfterSeconds) } ?? backoff)
            case .retry:
                Counter(label: "o365gw_microsoft_retries_total").increment()
                guard retries < configuration.maxRetries else {
                    throw MicrosoftError.fromAPIError(afCode: afCode, httpStatus: response.status)
                }
                try await sleep(RetryBackoff.delay(attempt: retries))
                retries += 1
            case .reauthenticate:
                guard !refreshed else { throw MicrosoftError.fromAPIError(afCode: afCode, httpStatus: response.status) }
                refreshed = true
                _ = try await tokens.token(for: auth, forceRefresh: true)
            case .fail(let error):
                throw error
            }
        }
    }

    private func takeBudget(_ tenant: TenantID, _ priority: RequestBudget.Priority) async throws {
        while true {
            let seconds = Date().timeIntervalSinceReferenceDate
            let wait = state.withLock { state -> Double? in
                var budget = state.budgets[tenant] ?? RequestBudget(perMinute: configuration.requestsPerMinute, now: seconds)
                let wait = budget.take(now: seconds, priority: priority)
                state.budgets[tenant] = budget
                return wait
            }
            guard let wait else { return }
            try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 1))
        }
    }

    private func drainBudget(_ tenant: TenantID) {
        let seconds = Date().timeIntervalSinceReferenceDate
        state.withLock { $0.budgets[tenant]?.drain(now: seconds) }
    }

    // MARK: Parsing

    /// The longest wait on a throttled answer, whatever `Retry-After` says.
    static let maxRetryAfterSeconds: Double = 120

    /// Whether `url` is on the same scheme, host and port as `base`.
    static func isOnHost(_ url: String, _ base: URL) -> Bool {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host?.lowercased(), let baseScheme = base.scheme?.lowercased()
        else { return false }
        func port(_ explicit: Int?, _ scheme: String) -> Int? { explicit ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : nil) }
        return scheme == baseScheme && host == base.host?.lowercased()
            && port(components.port, scheme) == port(base.port, baseScheme)
    }

    /// `scheme://host[:port]` of a URL, for messages (never its path or query).
    static func hostDescription(_ url: String) -> String {
        guard let components = URLComponents(string: url), let host = components.host else { return "an unreadable URL" }
        return "\(components.scheme ?? "?")://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    /// Appends `PublisherIdentifier` unless the URL already has it (in any case), keeping the URL otherwise verbatim.
    static func withPublisher(_ url: String, _ publisher: UUID?) -> String {
        guard let publisher else { return url }
        if url.range(of: "publisheridentifier=", options: .caseInsensitive) != nil { return url }
        return url + (url.contains("?") ? "&" : "?") + "PublisherIdentifier=\(publisher.uuidString.lowercased())"
    }

    static func afCode(_ body: [UInt8]) -> String? {
        guard !body.isEmpty, let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
            let error = object["error"] as? [String: Any]
        else { return nil }
        return error["code"] as? String
    }

    static func parseBlobs(_ body: [UInt8]) throws -> [ContentBlob] {
        guard let items = (try? JSONSerialization.jsonObject(with: Data(body))) as? [[String: Any]] else {
            throw MicrosoftError(code: "unexpected_response", advice: "Microsoft answered a content listing with something else than a JSON array.")
        }
        return try items.map { item in
            guard let id = item["contentId"] as? String, !id.isEmpty, let uri = item["contentUri"] as? String, !uri.isEmpty
            else {
                throw MicrosoftError(
                    code: "unexpected_response",
                    advice: "Microsoft listed a blob without a contentId or contentUri; the window is listed again later "
                        + "(nothing is skipped).")
            }
            return ContentBlob(
                contentType: item["contentType"] as? String ?? "", contentID: id, contentURI: uri,
                contentCreated: item["contentCreated"] as? String ?? "", contentExpiration: item["contentExpiration"] as? String ?? "")
        }
    }
}

/// `o365gw_microsoft_requests_total{kind, status}`, its counters made once: made per request, each cost a lookup in
/// the metrics factory under its lock, and the labels' formatting, on every idle poll.
enum RequestMetrics {
    private static let counters: [RequestKind: [Counter]] = Dictionary(uniqueKeysWithValues: RequestKind.allCases.map { kind in
        (kind, (1...5).map { Counter(label: "o365gw_microsoft_requests_total", dimensions: [("kind", kind.rawValue), ("status", "\($0)xx")]) })
    })

    static func count(_ kind: RequestKind, status: Int) {
        let statusClass = status / 100
        if (1...5).contains(statusClass), let counter = counters[kind]?[statusClass - 1] {
            counter.increment()
        } else {
            Counter(label: "o365gw_microsoft_requests_total", dimensions: [("kind", kind.rawValue), ("status", "\(statusClass)xx")]).increment()
        }
    }
}
