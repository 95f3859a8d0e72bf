import Foundation
import GatewayCore

/// A failure talking to Microsoft, with a stable code and advice an admin can act on. Never carries a secret:
/// Microsoft's descriptions are not copied, only its codes.
public struct MicrosoftError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var advice: String
    /// Microsoft's own code (`AADSTS7000215`, `AF20022`), when there is one.
    public var microsoftCode: String?
    public var httpStatus: Int?

    public init(code: String, advice: String, microsoftCode: String? = nil, httpStatus: Int? = nil) {
        self.code = code
        self.advice = advice
        self.microsoftCode = microsoftCode
        self.httpStatus = httpStatus
    }

    public var description: String { "\(code) (\(microsoftCode ?? "HTTP \(httpStatus.map(String.init) ?? "-")")): \(advice)" }

    /// Whether the tenant's credentials or consent are at fault (collection cannot work until an admin acts).
    public var isAuthenticationProblem: Bool { UnitStatus.authenticationCodes.contains(code) }
}

extension MicrosoftError {
    /// Maps a token endpoint error by its `error_codes` (never by its description text).
    static func fromTokenError(aadsts: Int?, error: String?, httpStatus: Int, cloud: Cloud) -> MicrosoftError {
        let microsoftCode = aadsts.map { "AADSTS\($0)" }
        func make(_ code: String, _ advice: String) -> MicrosoftError {
            MicrosoftError(code: code, advice: advice, microsoftCode: microsoftCode, httpStatus: httpStatus)
        }
        switch aadsts {
        case 7_000_215:
            return make(
                "invalid_client_secret",
                "Microsoft rejected the client secret. Copy the secret's Value (not its Secret ID) from the app "
                    + "registration's Certificates & secrets and rotate it with PUT /api/v1/tenants/{id}/secret.")
        case 7_000_222:
            return make(
                "client_secret_expired",
                "The client secret has expired. Create a new client secret in the app registration and rotate it "
                    + "with PUT /api/v1/tenants/{id}/secret.")
        case 90_002:
            return make(
                "tenant_not_found",
                "Microsoft does not know this tenant in the \(cloud.rawValue) cloud. Check the tenantId, or set the "
                    + "tenant's cloud (gcc, gcchigh, dod) if it lives in a government cloud.")
        case 900_023:
            return make("invalid_tenant_id", "The tenantId is neither a GUID nor a verified domain of the customer.")
        case 700_016:
            return make(
                "app_not_in_tenant",
                "The application is not present in the customer's tenant: an admin of that tenant must grant admin "
                    + "consent to the app (https://login.microsoftonline.com/{tenantId}/adminconsent?client_id="
                    + "{clientId}), or the clientId or cloud is wrong.")
        case 65_001:
            return make("consent_required", "Admin consent was not granted; an admin of the customer tenant must consent.")
        case 7_000_218:
            return make("missing_credential", "No client secret or certificate was sent; rotate the tenant's credential.")
        case 700_027, 700_024, 50_012, 50_027:
            return make(
                "certificate_rejected",
                "Microsoft rejected the certificate assertion: upload the certificate to the app registration "
                    + "(Certificates & secrets) and check that this machine's clock is right.")
        case 7_000_112:
            return make("application_disabled", "The application is disabled in the customer tenant; an admin must enable it.")
        default:
            return make(
                "token_request_failed",
                "Microsoft refused a token (\(microsoftCode ?? error ?? "HTTP \(httpStatus)")); check the tenant's "
                    + "clientId, credential and cloud.")
        }
    }

    /// Maps an Activity API `{"error":{"code":"AF..."}}` that the caller cannot handle itself.
    static func fromAPIError(afCode: String?, httpStatus: Int) -> MicrosoftError {
        func make(_ code: String, _ advice: String) -> MicrosoftError {
            MicrosoftError(code: code, advice: advice, microsoftCode: afCode, httpStatus: httpStatus)
        }
        switch afCode {
        case "AF10001":
            return make(
                "missing_activity_feed_permission",
                "The app lacks the ActivityFeed.Read application permission of Office 365 Management APIs, or admin "
                    + "consent was not granted. Add it (and ActivityFeed.ReadDlp for DLP.All) and grant admin consent.")
        case "AF20010":
            return make("tenant_mismatch", "The token belongs to another tenant than the API URL; check the tenantId.")
        case "AF20011", "AF20012", "AF20013":
            return make(
                "tenant_not_usable",
                "Microsoft reports the tenant missing, deleted or misconfigured for the Activity API; check the "
                    + "tenantId and that unified audit logging is on (it takes up to 60 minutes to start).")
        case "AF20022":
            return make("subscription_missing", "No subscription exists for this content type; the gateway starts it.")
        case "AF20023":
            return make(
                "subscription_disabled",
                "A tenant admin disabled the subscription for this content type; the gateway starts it again "
                    + "(at most once per 15 minutes).")
        case "AF20020":
            return make("invalid_content_type", "Microsoft does not know this content type.")
        case "AF20030", "AF20055":
            return make(
                "invalid_time_window",
                "Microsoft rejected the time window; check this machine's clock (the window start must be within 7 days).")
        case "AF429":
            return make("throttled", "Microsoft is throttling this tenant; the gateway backs off and retries.")
        default:
            if httpStatus == 401 {
                return make(
                    "unauthorized",
                    "The Activity API refused the token twice; check the app's ActivityFeed.Read permission and consent.")
            }
            if httpStatus == 404 && afCode == nil {
                return make(
                    "microsoft_not_found",
                    "The Activity API answered HTTP 404 without saying the content is gone (no AF code: a front end or "
                        + "proxy answers so during a deployment); it is retried and nothing is skipped.")
            }
            if httpStatus >= 500 || afCode?.hasPrefix("AF500") == true {
                return make("microsoft_unavailable", "The Activity API keeps failing; the gateway retries later.")
            }
            return make(
                "activity_api_error", "The Activity API answered HTTP \(httpStatus) \(afCode ?? ""); the gateway retries later.")
        }
    }
}
