import Foundation
import GatewayCore

/// The checks behind `POST /api/v1/tenants/{id}/validate`, in the order an admin fixes them: a token (secret or
/// certificate, tenant, cloud, app present), the Activity API permission (listing subscriptions), then which
/// selected subscriptions exist. Stops at the first failure, since later checks cannot pass. After the token, the
/// credential's end date is read from the app registration through Graph (and kept, when a recorder is given).
public struct TenantValidator: CredentialValidator {
    let client: ActivityClient
    let overrides: MicrosoftEndpoints.Overrides
    let defaultPublisher: UUID?
    public let expiryLookup: SecretExpiryLookup
    let recorder: (any SecretExpiryRecorder)?

    public init(
        client: ActivityClient, overrides: MicrosoftEndpoints.Overrides, defaultPublisher: UUID?,
        recorder: (any SecretExpiryRecorder)? = nil
    ) {
        self.client = client
        self.overrides = overrides
        self.defaultPublisher = defaultPublisher
        self.expiryLookup = SecretExpiryLookup(exchange: client.exchange, tokens: client.tokens, logger: client.logger)
        self.recorder = recorder
    }

    public func auth(_ tenant: Tenant, credential: Credential) -> TenantAuth {
        TenantAuth(
            tenant: tenant.id, microsoftTenantID: tenant.microsoftTenantID, clientID: tenant.clientID, cloud: tenant.cloud,
            credential: credential, endpoints: .forCloud(tenant.cloud, overrides: overrides),
            publisherID: tenant.publisherID ?? defaultPublisher)
    }

    public func validate(_ tenant: Tenant, credential: Credential) async -> [ValidationCheck] {
        let auth = auth(tenant, credential: credential)
        var checks: [ValidationCheck] = []
        if auth.endpoints.isExperimental {
            checks.append(ValidationCheck(
                name: "cloud", ok: true, code: "experimental_cloud",
                advice: "Microsoft does not document the Activity API for 21Vianet; collection there is experimental."))
        }
        do {
            _ = try await client.tokens.token(for: auth, forceRefresh: true)
            checks.append(ValidationCheck(name: "token", ok: true))
        } catch {
            checks.append(Self.failed("token", error))
            return checks
        }
        let finding = await expiryLookup.lookup(auth)
        if let recorder { try? await recorder.recordGraphFinding(finding, tenant: tenant.id, generation: tenant.credentialGeneration) }
        checks.append(Self.expiryCheck(finding))
        let subscriptions: [SubscriptionState]
        do {
            subscriptions = try await client.listSubscriptions(auth)
            checks.append(ValidationCheck(name: "permissions", ok: true))
        } catch {
            checks.append(Self.failed("permissions", error))
            return checks
        }
        let enabled = Set(subscriptions.filter(\.enabled).map(\.contentType))
        let missing = tenant.contentTypes.filter { !enabled.contains($0.rawValue) }
        checks.append(
            missing.isEmpty
                ? ValidationCheck(name: "subscriptions", ok: true)
                : ValidationCheck(
                    name: "subscriptions", ok: true, code: "subscriptions_pending",
                    advice: "Not yet subscribed: \(missing.map(\.rawValue).joined(separator: ", ")); the gateway starts them "
                        + "when collection begins (first content can take up to 12 hours)."))
        return checks
    }

    /// What Graph showed of the credential's end date; never a failure (collection works without it), but the
    /// advice says which permission would make the date exact.
    static func expiryCheck(_ finding: GraphExpiryFinding) -> ValidationCheck {
        let name = "secretExpiry"
        switch finding.outcome {
        case .found:
            return ValidationCheck(
                name: name, ok: true,
                advice: finding.expiresAt.map { "The credential in use ends \(RFC3339.format($0)), as the app registration shows (Microsoft Graph)." })
        case .permissionDenied:
            return ValidationCheck(
                name: name, ok: true, code: "graph_permission_missing",
                advice: "Microsoft Graph refused to show the app registration: grant the app the "
                    + "\(SecretExpiryReport.graphPermission) application permission (Microsoft Graph, with admin consent) so the "
                    + "gateway reads the exact expiry date; until then it uses the date given at onboarding.")
        case .applicationNotFound:
            return ValidationCheck(
                name: name, ok: true, code: "app_registered_elsewhere",
                advice: "The app registration is not in this tenant (a multi-tenant app registered elsewhere), so Graph "
                    + "cannot show its secrets here; give secretExpiresAt when onboarding or rotating.")
        case .credentialNotFound:
            return ValidationCheck(
                name: name, ok: true, code: "credential_not_in_registration",
                advice: "No credential of the app registration matches the one in use (by the secret's first characters, "
                    + "or the certificate's thumbprint); check Certificates & secrets of the app.")
        case .failed:
            return ValidationCheck(
                name: name, ok: true, code: "graph_unavailable",
                advice: "Microsoft Graph could not be asked for the expiry date now; the gateway retries later.")
        }
    }

    static func failed(_ name: String, _ error: any Error) -> ValidationCheck {
        if let error = error as? MicrosoftError {
            return ValidationCheck(name: name, ok: false, code: error.code, advice: error.advice)
        }
        if let error = error as? GatewayError {
            return ValidationCheck(name: name, ok: false, code: error.code, advice: error.message)
        }
        return ValidationCheck(name: name, ok: false, code: "microsoft_unreachable", advice: "Microsoft could not be reached; retry later.")
    }
}
