import Foundation
import GatewayCore

/// The checks behind `POST /api/v1/tenants/{id}/validate`, in the order an admin fixes them: a token (secret or
/// certificate, tenant, cloud, app present), the Activity API permission (listing subscriptions), then which
/// selected subscriptions exist. Stops at the first failure, since later checks cannot pass.
public struct TenantValidator: CredentialValidator {
    let client: ActivityClient
    let overrides: MicrosoftEndpoints.Overrides
    let defaultPublisher: UUID?

    public init(client: ActivityClient, overrides: MicrosoftEndpoints.Overrides, defaultPublisher: UUID?) {
        self.client = client
        self.overrides = overrides
        self.defaultPublisher = defaultPublisher
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
