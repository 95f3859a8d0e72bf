import Foundation

extension SecretExpiryReport {
    /// A printable page: one table, most urgent first, each row coloured by its status and saying what to do.
    /// Every text is HTML-escaped; the page loads nothing from elsewhere.
    public static func html(_ items: [SecretExpiryItem], generatedAt: Date, withinDays: Int) -> String {
        let counts = Dictionary(grouping: items, by: \.status).mapValues(\.count)
        let summary = [SecretExpiryItem.Status.expired, .expiring, .unknown, .ok]
            .map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: " · ")
        var rows = ""
        for item in items {
            let tenant = item.tenant
            rows += """
                <tr class="\(item.status.rawValue)"><td>\(escape(item.status.rawValue))</td><td>\(escape(tenant.name))</td>\
                <td><code>\(escape(tenant.microsoftTenantID.uuidString.lowercased()))</code></td>\
                <td>\(escape(item.expiresAt.map(RFC3339.format) ?? "—"))</td><td class="n">\(item.daysLeft.map(String.init) ?? "—")</td>\
                <td>\(escape(item.source?.rawValue ?? "—"))</td><td>\(escape(item.advice))</td></tr>

                """
        }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Secret expiry report</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222}
            table{border-collapse:collapse;width:100%;font-size:0.9em}
            th,td{border:1px solid #bbb;padding:0.35em 0.5em;text-align:left;vertical-align:top}
            th{background:#eee}td.n{text-align:right}
            tr.expired td{background:#f8d0d0}tr.expiring td{background:#fbe7b5}tr.unknown td{background:#e4e4e4}tr.ok td{background:#dcefdc}
            @media print{body{margin:0}tr{break-inside:avoid}}
            </style></head><body>
            <h1>Secret expiry report</h1>
            <p>Generated \(escape(RFC3339.format(generatedAt))); expiring means within \(withinDays) day(s). \(escape(summary)).</p>
            <table><thead><tr><th>Status</th><th>Tenant</th><th>Microsoft tenant id</th><th>Expires</th><th>Days left</th><th>Source</th><th>What to do</th></tr></thead>
            <tbody>
            \(rows)</tbody></table>
            </body></html>

            """
    }

    /// A plain-text table for a terminal or a mail: status, tenant, expiry, days left, source, then the advice.
    public static func table(_ items: [SecretExpiryItem]) -> String {
        let rows = items.map { item in
            [
                item.status.rawValue, item.tenant.name, item.expiresAt.map(RFC3339.format) ?? "-",
                item.daysLeft.map(String.init) ?? "-", item.source?.rawValue ?? "-",
            ]
        }
        let lines = TextTable.render(["STATUS", "TENANT", "EXPIRES", "DAYS", "SOURCE"], rows).split(separator: "\n")
        var text = String(lines[0]) + "\n"
        for (line, item) in zip(lines.dropFirst(), items) {
            text += line + "\n"
            if item.advice != "Nothing to do now." { text += "    " + item.advice + "\n" }
        }
        return text
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
