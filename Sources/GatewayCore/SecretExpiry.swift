import Foundation

/// Where a tenant's secret expiry date came from.
public enum SecretExpirySource: String, Sendable, Equatable {
    /// Given by the operator when onboarding or rotating (or the certificate's own end date).
    case onboarding
    /// Read from the app registration through Microsoft Graph.
    case graph
    /// Learned from a token error (AADSTS7000222, secret expired).
    case tokenError = "token_error"
}

/// What the last Graph lookup of a tenant's app registration found.
public struct GraphExpiryFinding: Sendable, Equatable {
    public enum Outcome: String, Sendable, Equatable {
        /// The credential in use was found; `expiresAt` is its `endDateTime`.
        case found
        /// 403 `Authorization_RequestDenied`: the app may not read its registration (no `Application.Read.All`).
        case permissionDenied = "permission_denied"
        /// No application object in this tenant: the app is registered in another tenant (a multi-tenant app).
        case applicationNotFound = "application_not_found"
        /// The registration has no secret whose hint matches (or no certificate with the thumbprint) in use.
        case credentialNotFound = "credential_not_found"
        /// Graph could not be asked (unreachable, throttled, an unexpected answer); retried at the next round.
        case failed
    }

    public var outcome: Outcome
    public var expiresAt: Date?
    public var checkedAt: Date

    public init(outcome: Outcome, expiresAt: Date? = nil, checkedAt: Date) {
        self.outcome = outcome
        self.expiresAt = expiresAt
        self.checkedAt = checkedAt
    }
}

/// Everything the gateway knows about when a tenant's credential stops working, and the one rule that turns it into
/// a date: Microsoft's refusal (AADSTS7000222) beats Graph, which beats what the operator typed.
public struct SecretExpiryEvidence: Sendable, Equatable {
    /// Given at onboarding or rotation (for a certificate, its `notAfter` unless given).
    public var stated: Date?
    /// The last Graph lookup for the current credential; nil until one ran (or after a rotation).
    public var graph: GraphExpiryFinding?
    /// When Microsoft refused the secret as expired; cleared by the next token it issues.
    public var refusedAt: Date?

    public init(stated: Date? = nil, graph: GraphExpiryFinding? = nil, refusedAt: Date? = nil) {
        self.stated = stated
        self.graph = graph
        self.refusedAt = refusedAt
    }

    /// The date collection breaks, as best known, and where it came from.
    public var effective: (expiresAt: Date, source: SecretExpirySource)? {
        if let refusedAt { return (refusedAt, .tokenError) }
        if let graph, graph.outcome == .found, let date = graph.expiresAt { return (date, .graph) }
        if let stated { return (stated, .onboarding) }
        return nil
    }

    /// How long a Graph finding stays fresh before it is looked up again.
    public static let graphRefreshInterval: TimeInterval = 86_400

    /// Whether Graph should be asked (again): never asked for this credential, or the last answer is a day old, or
    /// the last attempt failed an hour ago.
    public func graphLookupDue(now: Date) -> Bool {
        guard let graph else { return true }
        let age = now.timeIntervalSince(graph.checkedAt)
        return graph.outcome == .failed ? age >= 3600 : age >= Self.graphRefreshInterval
    }
}

/// One row of the expiry alert report.
public struct SecretExpiryItem: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        case expired, expiring, unknown, ok
    }

    public var tenant: Tenant
    public var expiresAt: Date?
    public var source: SecretExpirySource?
    public var daysLeft: Int?
    public var status: Status
    /// What the operator should do about this row, in words.
    public var advice: String
}

/// The expiry alert report: what to rotate, most urgent first. Pure; the API and the shell render it as JSON, CSV,
/// HTML or a table.
public enum SecretExpiryReport {
    public static let defaultWithinDays = 30
    /// The permission that lets the gateway read the exact date from the app registration.
    public static let graphPermission = "Application.Read.All"

    /// `expired` when the expiry is past, `expiring` within `withinDays`, `unknown` without a date, else `ok`.
    /// `daysLeft` counts whole days left (negative once expired).
    public static func items(_ tenants: [Tenant], now: Date, withinDays: Int) -> [SecretExpiryItem] {
        tenants.map { item($0, now: now, withinDays: withinDays) }.sorted(by: urgency)
    }

    public static func item(_ tenant: Tenant, now: Date, withinDays: Int) -> SecretExpiryItem {
        guard let (expiry, source) = tenant.secretExpiry.effective else {
            return SecretExpiryItem(
                tenant: tenant, expiresAt: nil, source: nil, daysLeft: nil, status: .unknown,
                advice: advice(tenant, status: .unknown, daysLeft: nil))
        }
        let seconds = expiry.timeIntervalSince(now)
        let daysLeft = Int((seconds / 86_400).rounded(.down))
        let status: SecretExpiryItem.Status =
            seconds <= 0 ? .expired : (seconds <= Double(withinDays) * 86_400 ? .expiring : .ok)
        return SecretExpiryItem(
            tenant: tenant, expiresAt: expiry, source: source, daysLeft: daysLeft, status: status,
            advice: advice(tenant, status: status, daysLeft: daysLeft))
    }

    /// What to do: rotate when it is urgent; otherwise how to make the date exact when it is not from Microsoft.
    static func advice(_ tenant: Tenant, status: SecretExpiryItem.Status, daysLeft: Int?) -> String {
        let what = tenant.credentialKind == .certificate ? "certificate" : "client secret"
        let rotate = "PUT /api/v1/tenants/\(tenant.id)/secret"
        switch status {
        case .expired:
            return tenant.secretExpiry.refusedAt != nil
                ? "Microsoft refuses the \(what) as expired: collection has stopped. Create a new \(what) in the app "
                    + "registration (client id \(tenant.clientID.uuidString.lowercased())) and set it with \(rotate)."
                : "The \(what) has expired: collection stops. Create a new one in the app registration and set it "
                    + "with \(rotate)."
        case .expiring:
            return "The \(what) expires in \(max(0, daysLeft ?? 0)) day(s). Create a new one in the app registration "
                + "and set it with \(rotate) before then." + exactness(tenant)
        case .unknown, .ok:
            let known = status == .ok ? "Nothing to do now." : "No expiry date is known."
            return known + exactness(tenant)
        }
    }

    /// Why the date may not be exact, and what would make it so; empty when it came from Microsoft.
    static func exactness(_ tenant: Tenant) -> String {
        if tenant.secretExpiry.effective?.source == .graph || tenant.secretExpiry.refusedAt != nil { return "" }
        switch tenant.secretExpiry.graph?.outcome {
        case .permissionDenied:
            return " The date is the one given at onboarding: grant the app the \(graphPermission) application "
                + "permission (with admin consent) so the gateway reads the exact date from Microsoft Graph."
        case .applicationNotFound:
            return " The app registration lives in another tenant (a multi-tenant app), so Graph cannot show its "
                + "secrets here: give secretExpiresAt when rotating."
        case .credentialNotFound:
            return " No \(tenant.credentialKind == .certificate ? "certificate" : "secret") of the app registration "
                + "matches the one in use (was it deleted?); check Certificates & secrets of the app."
        case .failed:
            return " Microsoft Graph could not be asked yet; the gateway retries within the hour."
        case .found, nil:
            return tenant.secretExpiry.graph == nil ? " The gateway asks Microsoft Graph for the exact date shortly." : ""
        }
    }

    static func urgency(_ a: SecretExpiryItem, _ b: SecretExpiryItem) -> Bool {
        let rank: [SecretExpiryItem.Status: Int] = [.expired: 0, .expiring: 1, .unknown: 2, .ok: 3]
        if rank[a.status]! != rank[b.status]! { return rank[a.status]! < rank[b.status]! }
        if let x = a.daysLeft, let y = b.daysLeft, x != y { return x < y }
        return a.tenant.name.lowercased() < b.tenant.name.lowercased()
    }

    public static let csvHeader = "id,name,tenantId,clientId,secretExpiresAt,daysLeft,status,source,graphLookup,advice"

    /// CSV (RFC 4180) with a header row. Text cells that a spreadsheet would run as a formula are prefixed with `'`.
    public static func csv(_ items: [SecretExpiryItem]) -> String {
        var lines = [csvHeader]
        for item in items {
            let tenant = item.tenant
            lines.append(
                [
                    "\(tenant.id)", cell(tenant.name), tenant.microsoftTenantID.uuidString.lowercased(),
                    tenant.clientID.uuidString.lowercased(), item.expiresAt.map(RFC3339.format) ?? "",
                    item.daysLeft.map(String.init) ?? "", item.status.rawValue, item.source?.rawValue ?? "",
                    tenant.secretExpiry.graph?.outcome.rawValue ?? "", cell(item.advice),
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func cell(_ text: String) -> String {
        var value = text
        if let first = value.first, "=+-@\t\r".contains(first) { value = "'" + value }
        guard value.contains(where: { ",\"\r\n".contains($0) }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
