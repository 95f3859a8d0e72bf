import Foundation

/// Where a tenant's secret expiry date came from.
public enum SecretExpirySource: String, Sendable, Equatable {
    /// Given by the operator when onboarding or rotating.
    case onboarding
    /// Read from the app registration through Microsoft Graph.
    case graph
    /// Learned from a token error (AADSTS7000222, secret expired).
    case tokenError = "token_error"
}

/// One row of the expiry alert report.
public struct SecretExpiryItem: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        case expired, expiring, unknown, ok
    }

    public var tenant: Tenant
    public var daysLeft: Int?
    public var status: Status
}

/// The expiry alert report: what to rotate, most urgent first. Pure; the API renders it as JSON or CSV.
public enum SecretExpiryReport {
    public static let defaultWithinDays = 30

    /// `expired` when the expiry is past, `expiring` within `withinDays`, `unknown` without a date, else `ok`.
    /// `daysLeft` counts whole days left (negative once expired).
    public static func items(_ tenants: [Tenant], now: Date, withinDays: Int) -> [SecretExpiryItem] {
        tenants.map { tenant in
            guard let expiry = tenant.secretExpiresAt else {
                return SecretExpiryItem(tenant: tenant, daysLeft: nil, status: .unknown)
            }
            let seconds = expiry.timeIntervalSince(now)
            let daysLeft = Int((seconds / 86_400).rounded(.down))
            let status: SecretExpiryItem.Status =
                seconds <= 0 ? .expired : (seconds <= Double(withinDays) * 86_400 ? .expiring : .ok)
            return SecretExpiryItem(tenant: tenant, daysLeft: daysLeft, status: status)
        }.sorted(by: urgency)
    }

    static func urgency(_ a: SecretExpiryItem, _ b: SecretExpiryItem) -> Bool {
        let rank: [SecretExpiryItem.Status: Int] = [.expired: 0, .expiring: 1, .unknown: 2, .ok: 3]
        if rank[a.status]! != rank[b.status]! { return rank[a.status]! < rank[b.status]! }
        if let x = a.daysLeft, let y = b.daysLeft, x != y { return x < y }
        return a.tenant.name.lowercased() < b.tenant.name.lowercased()
    }

    /// CSV (RFC 4180) with a header row. Text cells that a spreadsheet would run as a formula are prefixed with `'`.
    public static func csv(_ items: [SecretExpiryItem], source: (Tenant) -> String) -> String {
        var lines = ["id,name,tenantId,secretExpiresAt,daysLeft,status,source"]
        for item in items {
            let tenant = item.tenant
            lines.append(
                [
                    "\(tenant.id)", cell(tenant.name), tenant.microsoftTenantID.uuidString.lowercased(),
                    tenant.secretExpiresAt.map(RFC3339.format) ?? "", item.daysLeft.map(String.init) ?? "",
                    item.status.rawValue, source(tenant),
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
