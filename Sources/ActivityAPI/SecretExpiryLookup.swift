import CredentialCrypto
import Foundation
import GatewayCore
import Logging

/// A credential of an app registration as Graph lists it (`passwordCredentials`, `keyCredentials`).
public struct RegisteredCredential: Sendable, Equatable {
    public var keyID: String?
    /// Secrets: the first characters of the secret's value.
    public var hint: String?
    /// Certificates: base64 of the thumbprint (Graph's `Edm.Binary`), by default the SHA-1 one.
    public var customKeyIdentifier: String?
    public var endDateTime: Date?

    public init(keyID: String? = nil, hint: String? = nil, customKeyIdentifier: String? = nil, endDateTime: Date?) {
        self.keyID = keyID
        self.hint = hint
        self.customKeyIdentifier = customKeyIdentifier
        self.endDateTime = endDateTime
    }
}

/// Reads the app registration of a tenant's app through Microsoft Graph, with the tenant's own credential (a token
/// for the Graph audience of its cloud), and finds the end date of the credential the gateway uses: never another
/// secret of the same app, even one that ends later. Never throws: what went wrong is the finding's outcome.
public struct SecretExpiryLookup: Sendable {
    let exchange: any HTTPExchange
    let tokens: TokenProvider
    let now: @Sendable () -> Date
    let sleep: @Sendable (Double) async throws -> Void
    let logger: Logger

    public init(
        exchange: any HTTPExchange, tokens: TokenProvider, now: @escaping @Sendable () -> Date = { Date() },
        sleep: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .milliseconds(Int($0 * 1000))) },
        logger: Logger
    ) {
        self.exchange = exchange
        self.tokens = tokens
        self.now = now
        self.sleep = sleep
        self.logger = logger
    }

    public func lookup(_ auth: TenantAuth) async -> GraphExpiryFinding {
        let checkedAt = now()
        do {
            guard let (passwords, keys) = try await registration(auth) else {
                return GraphExpiryFinding(outcome: .applicationNotFound, checkedAt: checkedAt)
            }
            guard let end = Self.endDate(of: auth.credential, passwords: passwords, keys: keys) else {
                return GraphExpiryFinding(outcome: .credentialNotFound, checkedAt: checkedAt)
            }
            return GraphExpiryFinding(outcome: .found, expiresAt: end, checkedAt: checkedAt)
        } catch is GraphDenied {
            return GraphExpiryFinding(outcome: .permissionDenied, checkedAt: checkedAt)
        } catch {
            logger.notice(
                "graph lookup of the app registration failed",
                metadata: ["tenant": "\(auth.tenant)", "error": "\(error)"])
            return GraphExpiryFinding(outcome: .failed, checkedAt: checkedAt)
        }
    }

    struct GraphDenied: Error {}

    /// The application object's credentials, or nil when this tenant has none for the app (registered elsewhere).
    func registration(_ auth: TenantAuth) async throws -> (passwords: [RegisteredCredential], keys: [RegisteredCredential])? {
        let appID = auth.clientID.uuidString.lowercased()
        let filter = "appId%20eq%20%27\(appID)%27"
        let url = auth.endpoints.graph.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            + "/v1.0/applications?$filter=\(filter)&$select=id,appId,passwordCredentials,keyCredentials"
        var attempt = 0
        var refreshed = false
        while true {
            let token = try await tokens.token(for: auth, audience: .graph, forceRefresh: refreshed)
            let response: MicrosoftResponse
            do {
                response = try await exchange.send(MicrosoftRequest(
                    method: "GET", url: url, headers: [("Authorization", "Bearer \(token.unredacted)"), ("Accept", "application/json")]))
            } catch let failure as TransportFailure {
                guard attempt < 3 else { throw failure }
                try await sleep(RetryBackoff.delay(attempt: attempt, base: 1, cap: 16))
                attempt += 1
                continue
            }
            switch response.status {
            case 200:
                return try Self.parseApplications(response.body)
            case 401 where !refreshed:
                refreshed = true
            case 403:
                throw GraphDenied()
            case 429, 500...599:
                guard attempt < 3 else {
                    throw MicrosoftError(
                        code: "graph_unavailable", advice: "Microsoft Graph keeps answering HTTP \(response.status); retried later.",
                        httpStatus: response.status)
                }
                let retryAfter = response.header("Retry-After").flatMap(Double.init).map { min($0, 120) }
                try await sleep(retryAfter ?? RetryBackoff.delay(attempt: attempt, base: 1, cap: 16))
                attempt += 1
            default:
                throw MicrosoftError(
                    code: "graph_error", advice: "Microsoft Graph answered HTTP \(response.status); retried later.",
                    httpStatus: response.status)
            }
        }
    }

    static func parseApplications(_ body: [UInt8]) throws -> (passwords: [RegisteredCredential], keys: [RegisteredCredential])? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
            let value = object["value"] as? [[String: Any]]
        else {
            throw MicrosoftError(code: "unexpected_response", advice: "Microsoft Graph answered with something else than an application list.")
        }
        guard let application = value.first else { return nil }
        func credentials(_ key: String) -> [RegisteredCredential] {
            ((application[key] as? [[String: Any]]) ?? []).map { item in
                RegisteredCredential(
                    keyID: item["keyId"] as? String, hint: item["hint"] as? String,
                    customKeyIdentifier: item["customKeyIdentifier"] as? String,
                    endDateTime: (item["endDateTime"] as? String).flatMap(RFC3339.parse))
            }
        }
        return (credentials("passwordCredentials"), credentials("keyCredentials"))
    }

    /// The end date of the credential in use. A secret is matched by its `hint` (the first three characters of its
    /// value); when several secrets share the hint, the earliest end date is taken, since the one in use cannot be
    /// told apart and the earliest is the one that may break collection. A certificate is matched by thumbprint.
    public static func endDate(
        of credential: Credential, passwords: [RegisteredCredential], keys: [RegisteredCredential]
    ) -> Date? {
        switch credential {
        case .clientSecret(let secret):
            let value = secret.unredacted
            let matching = passwords.filter { entry in
                guard let hint = entry.hint, !hint.isEmpty else { return false }
                return value.hasPrefix(hint)
            }
            return matching.compactMap(\.endDateTime).min()
        case .certificate(let certificate):
            guard let thumbprints = try? CertificateCredential(certificate).thumbprints else { return nil }
            let matching = keys.filter { entry in
                guard let identifier = entry.customKeyIdentifier else { return false }
                return Self.identifies(identifier, thumbprints)
            }
            return matching.compactMap(\.endDateTime).min()
        }
    }

    /// Whether a `customKeyIdentifier` names one of `thumbprints`: base64 of the raw thumbprint (what the portal
    /// and Graph write), or base64 of its hex text (what some scripts upload).
    static func identifies(_ identifier: String, _ thumbprints: [[UInt8]]) -> Bool {
        guard let bytes = Data(base64Encoded: identifier).map(Array.init) else {
            return thumbprints.contains { hex($0) == identifier.uppercased() }
        }
        if thumbprints.contains(bytes) { return true }
        let text = String(decoding: bytes, as: UTF8.self).uppercased()
        return thumbprints.contains { hex($0) == text }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02X", $0) }.joined()
    }
}
