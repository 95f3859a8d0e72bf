import Crypto
import Foundation
import SwiftASN1
import X509
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A faithful, seeded simulator of the Office 365 Management Activity API, its token endpoints and Graph
/// `applications` (reference §8). One HTTP server answers for the login, manage and Graph hosts: point
/// `O365GW_LOGIN_URL`, `O365GW_MANAGE_URL` and `O365GW_GRAPH_URL` at it.
public final class MicrosoftSimulator: Service, Sendable {
    public let configuration: SimulatorConfiguration
    public let generator: ContentGenerator
    let state: SimulatorState
    let host: String
    let port: Int
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    public init(
        configuration: SimulatorConfiguration, host: String = "127.0.0.1", port: Int = 0, startedAt: Date = Date(),
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.state = SimulatorState(configuration: configuration, startedAt: startedAt)
        self.generator = state.generator
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    /// Requests answered, throttled, failed on purpose, and subscription starts.
    public var stats: (requests: Int, throttled: Int, faults: Int, starts: Int) { state.stats }

    public func run() async throws {
        let router = Router()
        let routes = SimulatorRoutes(state: state)
        router.post("/:tenant/oauth2/token") { request, context in try await routes.token(request, context, v2: false) }
        router.post("/:tenant/oauth2/v2.0/token") { request, context in try await routes.token(request, context, v2: true) }
        router.get("/api/:version/:tenant/activity/feed/subscriptions/list") { request, context in routes.listSubscriptions(request, context) }
        router.post("/api/:version/:tenant/activity/feed/subscriptions/start") { request, context in routes.start(request, context) }
        router.get("/api/:version/:tenant/activity/feed/subscriptions/content") { request, context in routes.content(request, context) }
        router.get("/api/:version/:tenant/activity/feed/audit/:contentId") { request, context in routes.blob(request, context) }
        router.get("/v1.0/applications") { request, context in routes.applications(request, context) }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "o365-simulator"),
            onServerRunning: { [onListening] channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        // Signals belong to the outer service group, which shuts services down in order.
        try await app.runService(gracefulShutdownSignals: [])
    }
}

struct SimulatorRoutes: Sendable {
    let state: SimulatorState
    var configuration: SimulatorConfiguration { state.configuration }

    // MARK: Tokens

    func token(_ request: Request, _ context: BasicRequestContext, v2: Bool) async throws -> Response {
        let now = Date()
        let body = try await request.body.collect(upTo: 1 << 20)
        let form = Self.parseForm(String(buffer: body))
        guard let index = state.tenantIndex(context.parameters.get("tenant") ?? "") else {
            return tokenError(400, "invalid_request", 90002, "Tenant not found.")
        }
        let tenant = configuration.tenants[index]
        guard form["grant_type"] == "client_credentials" else {
            return tokenError(400, "unsupported_grant_type", 70003, "Unsupported grant type.")
        }
        if v2 {
            guard let scope = form["scope"], scope.hasSuffix("/.default"), !scope.contains(" ") else {
                return tokenError(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
            }
            if form["resource"] != nil { return tokenError(400, "invalid_request", 901002, "The 'resource' request parameter is not supported.") }
        }
        guard tenant.mode != .appNotFound, form["client_id"]?.lowercased() == tenant.clientId.uuidString.lowercased() else {
            return tokenError(400, "unauthorized_client", 700016, "Application was not found in the directory.")
        }
        if let secret = form["client_secret"] {
            guard secret == tenant.clientSecret else { return tokenError(401, "invalid_client", 7000215, "Invalid client secret provided.") }
            if tenant.mode == .expiredSecret { return tokenError(401, "invalid_client", 7000222, "The provided client secret keys are expired.") }
        } else if let assertion = form["client_assertion"] {
            guard form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                let certificate = tenant.certificatePem,
                AssertionVerifier.verify(assertion, certificatePEM: certificate, clientID: tenant.clientId.uuidString.lowercased(), now: now)
            else { return tokenError(401, "invalid_client", 700027, "Client assertion failed signature validation.") }
        } else {
            return tokenError(401, "invalid_client", 7000218, "The request body must contain client_secret or client_assertion.")
        }
        let audience = (v2 ? form["scope"] : form["resource"]) ?? ""
        let token = state.issueToken(tenant: index, graph: audience.contains("graph"), now: now)
        let lifetime = configuration.tokenLifetimeSeconds
        let json: String
        if v2 {
            json = #"{"token_type":"Bearer","expires_in":\#(lifetime),"ext_expires_in":\#(lifetime),"access_token":"\#(token)"}"#
        } else {
            let epoch = Int(now.timeIntervalSince1970)
            json = #"{"token_type":"Bearer","expires_in":"\#(lifetime)","ext_expires_in":"\#(lifetime)","expires_on":"\#(epoch + lifetime)","not_before":"\#(epoch)","resource":"\#(form["resource"] ?? "https://manage.office.com")","access_token":"\#(token)"}"#
        }
        return Self.json(200, json)
    }

    func tokenError(_ status: Int, _ error: String, _ code: Int, _ text: String) -> Response {
        let stamp = ContentGenerator.microsoftTime(Date()).replacingOccurrences(of: "T", with: " ") + "Z"
        let trace = UUID().uuidString.lowercased()
        return Self.json(status, #"{"error":"\#(error)","error_description":"AADSTS\#(code): \#(text)\r\nTrace ID: \#(trace)\r\nCorrelation ID: \#(trace)\r\nTimestamp: \#(stamp)","error_codes":[\#(code)],"timestamp":"\#(stamp)","trace_id":"\#(trace)","correlation_id":"\#(trace)","error_uri":"https://login.microsoftonline.com/error?code=\#(code)"}"#)
    }

    // MARK: Activity API

    /// Authenticates an API call and applies faults and throttling; returns the tenant index or the answer.
    func authorize(_ request: Request, _ context: BasicRequestContext) -> Result<Int, ResponseError> {
        let now = Date()
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            let token = state.token(String(header.dropFirst(7))), token.expiresAt > now
        else { return .failure(ResponseError(Self.json(401, #"{"Message":"Authorization has been denied for this request."}"#))) }
        guard let index = state.tenantIndex(context.parameters.get("tenant") ?? ""), index == token.tenantIndex else {
            return .failure(ResponseError(Self.afError(400, "AF20010", "The tenant ID passed in the URL does not match the tenant ID passed in the access token.")))
        }
        guard !token.graph else {
            return .failure(ResponseError(Self.json(401, #"{"Message":"Authorization has been denied for this request."}"#)))
        }
        guard token.roles else {
            return .failure(ResponseError(Self.afError(401, "AF10001", "The permission set () sent in the request does not include the expected permission.")))
        }
        switch state.admit(tenant: index, now: now) {
        case .ok: return .success(index)
        case .fault: return .failure(ResponseError(Self.afError(500, "AF50000", "An internal error occurred. Retry the request.")))
        case .throttled:
            var headers: HTTPFields = [:]
            if let retryAfter = configuration.retryAfterSeconds { headers[.retryAfter] = "\(retryAfter)" }
            let publisher = request.uri.queryParameters.first { $0.key.lowercased() == "publisheridentifier" }.map { String($0.value) } ?? "00000000-0000-0000-0000-000000000000"
            return .failure(ResponseError(Self.afError(configuration.throttleStatus, "AF429", "Too many requests. Method=\(request.uri.path), PublisherId=\(publisher)", headers: headers)))
        }
    }

    struct ResponseError: Error { var response: Response; init(_ response: Response) { self.response = response } }

    func listSubscriptions(_ request: Request, _ context: BasicRequestContext) -> Response {
        switch authorize(request, context) {
        case .failure(let error): return error.response
        case .success(let index):
            let items = state.enabledTypes(index).map { type, status in
                #"{"contentType":"\#(type)","status":"\#(status == .enabled ? "enabled" : "disabled")","webhook":null}"#
            }
            return Self.json(200, "[" + items.joined(separator: ",") + "]")
        }
    }

    func start(_ request: Request, _ context: BasicRequestContext) -> Response {
        switch authorize(request, context) {
        case .failure(let error): return error.response
        case .success(let index):
            guard let type = request.uri.queryParameters.get("contentType"), ContentGenerator.contentTypes.contains(type) else {
                return Self.afError(400, "AF20020", "The content type is not valid.")
            }
            guard state.start(index, type) else { return Self.afError(400, "AF20024", "The subscription is already enabled. No property change.") }
            return Self.json(200, #"{"contentType":"\#(type)","status":"enabled","webhook":null}"#)
        }
    }

    func content(_ request: Request, _ context: BasicRequestContext) -> Response {
        let index: Int
        switch authorize(request, context) {
        case .failure(let error): return error.response
        case .success(let value): index = value
        }
        let now = Date()
        let query = request.uri.queryParameters
        guard let type = query.get("contentType"), ContentGenerator.contentTypes.contains(type) else {
            return Self.afError(400, "AF20020", "The content type is not valid.")
        }
        switch state.subscription(index, type) {
        case nil: return Self.afError(400, "AF20022", "No subscription found for the specified content type.")
        case .disabled: return Self.afError(400, "AF20023", "The subscription was disabled by a tenant admin or a service admin.")
        case .enabled: break
        }
        let startText = query.get("startTime"), endText = query.get("endTime")
        let start: Date, end: Date
        switch (startText.flatMap(Self.parseTime), endText.flatMap(Self.parseTime)) {
        case (.some(let s), .some(let e)): (start, end) = (s, e)
        case (nil, nil) where startText == nil && endText == nil: (start, end) = (now.addingTimeInterval(-86_400), now)
        default: return Self.afError(400, "AF20030", "Start time and end time must both be specified (or both omitted) and be valid.")
        }
        guard start < end else { return Self.afError(400, "AF20055", "Start time and end time must both be valid, and start before end.") }
        guard end.timeIntervalSince(start) <= 86_400, start >= now.addingTimeInterval(-7 * 86_400) else {
            return Self.afError(400, "AF20030", "Start time and end time must be no more than 24 hours apart, with start within the last 7 days.")
        }
        var offset = 0
        if let page = query.get("nextPage") {
            guard page.hasPrefix("p"), let value = Int(page.dropFirst()), value >= 0 else {
                return Self.afError(400, "AF20031", "Invalid nextPage input.")
            }
            offset = value
        }
        let blobs = state.generator.blobs(tenant: index, contentType: type, start: start, end: end, now: now)
        let page = blobs.dropFirst(offset).prefix(configuration.pageSize)
        let base = Self.baseURL(request)
        let tenantID = configuration.tenants[index].tenantId.uuidString.lowercased()
        let items = page.map { blob in
            #"{"contentType":"\#(type)","contentId":"\#(blob.contentID)","contentUri":"\#(base)/api/v1.0/\#(tenantID)/activity/feed/audit/\#(blob.contentID)","contentCreated":"\#(ContentGenerator.contentTime(blob.contentCreated))","contentExpiration":"\#(ContentGenerator.contentTime(blob.contentCreated.addingTimeInterval(7 * 86_400)))"}"#
        }
        var headers: HTTPFields = [:]
        if offset + page.count < blobs.count {
            // As documented: the `api/v1` form, the window repeated, no PublisherIdentifier (clients re-append it).
            headers[HTTPField.Name("NextPageUri")!] =
                "\(base)/api/v1/\(tenantID)/activity/feed/subscriptions/content?contentType=\(type)&startTime=\(startText ?? ContentGenerator.microsoftTime(start))&endTime=\(endText ?? ContentGenerator.microsoftTime(end))&nextPage=p\(offset + page.count)"
        }
        return Self.json(200, "[" + items.joined(separator: ",") + "]", headers: headers)
    }

    func blob(_ request: Request, _ context: BasicRequestContext) -> Response {
        let index: Int
        switch authorize(request, context) {
        case .failure(let error): return error.response
        case .success(let value): index = value
        }
        let now = Date()
        let contentID = context.parameters.get("contentId") ?? ""
        guard contentID.contains("$") else { return Self.afError(400, "AF20052", "Content ID in the URL is invalid.") }
        guard let blob = state.generator.blob(contentID: contentID), blob.tenantIndex == index, blob.availableAt <= now else {
            return Self.afError(400, "AF20050", "The specified content doesn't exist.")
        }
        guard blob.contentCreated.addingTimeInterval(7 * 86_400) > now else {
            return Self.afError(400, "AF20051", "Content requested with the key \(contentID) has already expired. Content older than 7 days cannot be retrieved.")
        }
        if state.failsFetch(contentID) {
            let status = configuration.blobFailureStatus
            return status == 404
                ? Self.json(404, #"{"Message":"No HTTP resource was found that matches the request URI."}"#)
                : Response(status: .init(code: status), body: .init(byteBuffer: ByteBuffer(string: "<html><body>Service Unavailable</body></html>")))
        }
        return Self.json(200, state.generator.blobBody(blob))
    }

    // MARK: Graph

    func applications(_ request: Request, _ context: BasicRequestContext) -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            let token = state.token(String(header.dropFirst(7))), token.expiresAt > Date()
        else { return Self.json(401, #"{"error":{"code":"InvalidAuthenticationToken","message":"Access token is empty."}}"#) }
        guard token.graph else {
            return Self.json(401, #"{"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure. Invalid audience."}}"#)
        }
        let tenant = configuration.tenants[token.tenantIndex]
        guard tenant.graphPermission else {
            return Self.json(403, #"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"date":"\#(ContentGenerator.microsoftTime(Date()))","request-id":"\#(UUID().uuidString.lowercased())"}}}"#)
        }
        let filter = request.uri.queryParameters.get("$filter") ?? ""
        let appID = tenant.clientId.uuidString.lowercased()
        let registration = tenant.registration ?? Self.defaultRegistration(tenant)
        var value: [[String: Any]] = []
        if filter.lowercased().contains(appID), registration.inThisTenant {
            func entries(_ credentials: [SimulatorConfiguration.Tenant.Registration.Credential], key: Bool) -> [[String: Any]] {
                credentials.enumerated().map { index, credential in
                    var entry: [String: Any] = [
                        "keyId": Deterministic.uuid(configuration.seed, key ? "key" : "password", UInt64(index)).uuidString.lowercased(),
                        "displayName": "credential \(index + 1)", "startDateTime": "2025-01-01T00:00:00Z",
                        "endDateTime": credential.endDateTime,
                        "customKeyIdentifier": credential.customKeyIdentifier ?? NSNull(),
                    ]
                    if key {
                        entry["type"] = "AsymmetricX509Cert"
                        entry["usage"] = "Verify"
                        entry["key"] = NSNull()
                    } else {
                        entry["hint"] = credential.hint ?? NSNull()
                        entry["secretText"] = NSNull()
                    }
                    return entry
                }
            }
            value = [[
                "id": Deterministic.uuid(configuration.seed, "application", UInt64(token.tenantIndex)).uuidString.lowercased(),
                "appId": appID, "displayName": "o365-gateway",
                "passwordCredentials": entries(registration.passwordCredentials, key: false),
                "keyCredentials": entries(registration.keyCredentials, key: true),
            ]]
        }
        let body: [String: Any] = ["@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications", "value": value]
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        return Self.json(200, String(decoding: data, as: UTF8.self))
    }

    /// One secret matching the tenant's (its first three characters as the hint) ending at `secretExpiresAt`, and
    /// for a certificate one key credential with its SHA-1 thumbprint and end date, as the portal registers them.
    static func defaultRegistration(_ tenant: SimulatorConfiguration.Tenant) -> SimulatorConfiguration.Tenant.Registration {
        var registration = SimulatorConfiguration.Tenant.Registration()
        if let secret = tenant.clientSecret, let end = tenant.secretExpiresAt {
            registration.passwordCredentials = [.init(hint: String(secret.prefix(3)), endDateTime: end)]
        }
        if let pem = tenant.certificatePem, let certificate = try? Certificate(pemEncoded: pem) {
            var serializer = DER.Serializer()
            if (try? serializer.serialize(certificate)) != nil {
                let thumbprint = Data(Insecure.SHA1.hash(data: serializer.serializedBytes)).base64EncodedString()
                registration.keyCredentials = [
                    .init(customKeyIdentifier: thumbprint, endDateTime: ContentGenerator.contentTime(certificate.notValidAfter))
                ]
            }
        }
        return registration
    }

    // MARK: Helpers

    static func json(_ status: Int, _ body: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func afError(_ status: Int, _ code: String, _ message: String, headers: HTTPFields = [:]) -> Response {
        json(status, #"{"error":{"code":"\#(code)","message":"\#(message)"}}"#, headers: headers)
    }

    static func baseURL(_ request: Request) -> String {
        "http://" + (request.head.authority ?? "127.0.0.1")
    }

    /// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS`, each with an optional `Z`; UTC.
    static func parseTime(_ text: String) -> Date? {
        var value = text.hasSuffix("Z") ? String(text.dropLast()) : text
        switch value.count {
        case 10: value += "T00:00:00"
        case 16: value += ":00"
        case 19: break
        default: return nil
        }
        return try? Date.ISO8601FormatStyle().parse(value + "Z")
    }

    static func parseForm(_ body: String) -> [String: String] {
        var form: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
        return form
    }
}
