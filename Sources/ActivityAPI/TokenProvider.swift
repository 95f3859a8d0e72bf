import CredentialCrypto
import Foundation
import GatewayCore
import Logging

/// What the client needs to act for one tenant.
public struct TenantAuth: Sendable {
    public var tenant: TenantID
    public var microsoftTenantID: UUID
    public var clientID: UUID
    public var cloud: Cloud
    public var credential: Credential
    public var endpoints: MicrosoftEndpoints
    public var publisherID: UUID?

    public init(
        tenant: TenantID, microsoftTenantID: UUID, clientID: UUID, cloud: Cloud, credential: Credential,
        endpoints: MicrosoftEndpoints, publisherID: UUID?
    ) {
        self.tenant = tenant
        self.microsoftTenantID = microsoftTenantID
        self.clientID = clientID
        self.cloud = cloud
        self.credential = credential
        self.endpoints = endpoints
        self.publisherID = publisherID
    }
}

/// A token endpoint answer, in the v1 shape (numbers as strings) or the v2 shape (numbers as numbers).
struct TokenResponse: Sendable {
    var accessToken: Secret
    var expiresIn: Int

    static func parse(_ body: [UInt8]) -> TokenResponse? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
            let token = object["access_token"] as? String, !token.isEmpty
        else { return nil }
        let expires: Int? =
            switch object["expires_in"] {
            case let number as NSNumber: number.intValue
            case let text as String: Int(text)
            default: nil
            }
        return TokenResponse(accessToken: Secret(token), expiresIn: expires ?? 3599)
    }
}

/// Parses a token endpoint error body by `error` and `error_codes` (never by its description).
func tokenError(_ response: MicrosoftResponse, cloud: Cloud) -> MicrosoftError {
    let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
    let codes = (object?["error_codes"] as? [NSNumber])?.map(\.intValue)
    return MicrosoftError.fromTokenError(
        aadsts: codes?.first, error: object?["error"] as? String, httpStatus: response.status, cloud: cloud)
}

/// Gets OAuth2 client-credentials tokens (v2 endpoint) per tenant and caches them until shortly before expiry.
/// Concurrent callers for one tenant share one request.
public actor TokenProvider {
    public enum Audience: Sendable, Hashable { case activityAPI, graph }

    struct Key: Hashable { var tenant: TenantID; var audience: Audience }
    struct Cached { var token: Secret; var refreshAt: Date }

    let exchange: any HTTPExchange
    let now: @Sendable () -> Date
    let logger: Logger
    /// Told when Microsoft refuses a secret as expired and when it issues a token again (docs/expiry.md).
    let recorder: (any SecretExpiryRecorder)?
    private var cache: [Key: Cached] = [:]
    private var waiting: [Key: [CheckedContinuation<Secret, any Error>]] = [:]

    public init(
        exchange: any HTTPExchange, now: @escaping @Sendable () -> Date = { Date() },
        recorder: (any SecretExpiryRecorder)? = nil, logger: Logger
    ) {
        self.exchange = exchange
        self.now = now
        self.recorder = recorder
        self.logger = logger
    }

    /// A valid token; `forceRefresh` after the API refused the cached one.
    public func token(for auth: TenantAuth, audience: Audience = .activityAPI, forceRefresh: Bool = false) async throws -> Secret {
        let key = Key(tenant: auth.tenant, audience: audience)
        if forceRefresh { cache[key] = nil }
        if let cached = cache[key], now() < cached.refreshAt { return cached.token }
        if waiting[key] != nil {
            return try await withCheckedThrowingContinuation { waiting[key]!.append($0) }
        }
        waiting[key] = []
        do {
            let response = try await requestToken(auth, audience: audience)
            // Refresh at 80 % of the lifetime as given, whatever its length (Microsoft's are about an hour; a short
            // one is still cached for most of its life, not asked for again at every call).
            let refreshAt = now().addingTimeInterval(Double(max(1, response.expiresIn)) * 0.8)
            cache[key] = Cached(token: response.accessToken, refreshAt: refreshAt)
            waiting.removeValue(forKey: key)?.forEach { $0.resume(returning: response.accessToken) }
            await record(auth.tenant) { try await $0.clearRefusal(auth.tenant) }
            return response.accessToken
        } catch {
            waiting.removeValue(forKey: key)?.forEach { $0.resume(throwing: error) }
            if (error as? MicrosoftError)?.code == "client_secret_expired" {
                let at = now()
                await record(auth.tenant) { try await $0.recordRefusal(auth.tenant, at: at) }
            }
            throw error
        }
    }

    /// What Microsoft said of the credential is worth keeping, but not worth failing a token request over.
    private func record(_ tenant: TenantID, _ write: (any SecretExpiryRecorder) async throws -> Void) async {
        guard let recorder else { return }
        do {
            try await write(recorder)
        } catch {
            logger.notice("could not record what Microsoft said of the credential", metadata: ["tenant": "\(tenant)", "error": "\(error)"])
        }
    }

    /// Forgets a tenant's tokens (its credential changed, or it was deleted).
    public func forget(_ tenant: TenantID) {
        cache = cache.filter { $0.key.tenant != tenant }
    }

    private func requestToken(_ auth: TenantAuth, audience: Audience) async throws -> TokenResponse {
        let url = auth.endpoints.tokenURL(tenant: auth.microsoftTenantID).absoluteString
        var form: [(String, String)] = [
            ("grant_type", "client_credentials"), ("client_id", auth.clientID.uuidString.lowercased()),
            ("scope", audience == .graph ? auth.endpoints.graphScope : auth.endpoints.scope),
        ]
        switch auth.credential {
        case .clientSecret(let secret):
            form.append(("client_secret", secret.unredacted))
        case .certificate(let certificate):
            let assertion = try CertificateCredential(certificate).clientAssertion(
                clientID: auth.clientID, audience: url, now: now())
            form.append(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))
            form.append(("client_assertion", assertion))
        }
        let body = form.map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&")
        let request = MicrosoftRequest(
            method: "POST", url: url, headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: Array(body.utf8))
        var attempt = 0
        while true {
            let response: MicrosoftResponse
            do {
                response = try await exchange.send(request)
            } catch let failure as TransportFailure {
                guard attempt < 4 else {
                    throw MicrosoftError(
                        code: "login_unreachable", advice: "The Microsoft sign-in endpoint cannot be reached (\(failure)); the gateway retries later.")
                }
                try await Task.sleep(for: .milliseconds(Int(RetryBackoff.delay(attempt: attempt, base: 0.5, cap: 8) * 1000)))
                attempt += 1
                continue
            }
            if response.status == 200, let token = TokenResponse.parse(response.body) { return token }
            if response.status >= 500 || response.status == 429, attempt < 4 {
                try await Task.sleep(for: .milliseconds(Int(RetryBackoff.delay(attempt: attempt, base: 0.5, cap: 8) * 1000)))
                attempt += 1
                continue
            }
            let error = tokenError(response, cloud: auth.cloud)
            logger.notice("token refused", metadata: ["tenant": "\(auth.tenant)", "code": "\(error.code)", "microsoft": "\(error.microsoftCode ?? "-")"])
            throw error
        }
    }

    static func formEncode(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
