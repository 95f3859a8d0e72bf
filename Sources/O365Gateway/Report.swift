import AdminAPI
import ArgumentParser
import Foundation
import GatewayApp
import GatewayCore

/// `o365-gateway report ...`: reports read straight from the gateway's database, for cron and mail.
struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a report from the gateway's database (no running gateway needed).",
        subcommands: [SecretExpiry.self])

    struct SecretExpiry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "secret-expiry",
            abstract: "Which tenants' secrets or certificates to rotate, most urgent first, with what to do for each.",
            discussion: """
                The same report as GET /api/v1/reports/secret-expiry. Needs only O365GW_DATABASE_URL (read access);
                exits 0 when nothing is expired or expiring, 1 when something is, 2 on an error, so cron can mail it:
                  o365-gateway report secret-expiry --within-days 14 --format html > expiry.html || mail ...

                """ + Setting.help(for: .report))

        enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, csv, html }

        @OptionGroup var settings: SettingsArguments

        @Option(name: .customLong("within-days"), help: "Days ahead that count as expiring (0 to 3650; default 30).")
        var withinDays: Int = SecretExpiryReport.defaultWithinDays

        @Option(name: .customLong("format"), help: "table, json, csv or html (default table).")
        var format: Format = .table

        func run() async throws {
            guard (0...3650).contains(withinDays) else { throw ValidationError("--within-days must be from 0 to 3650.") }
            var urgent = false
            try await runReportingErrors {
                let (settings, logger) = try await settings.load(.report)
                let now = Date()
                let items = SecretExpiryReport.items(
                    try await Gateway.tenants(try settings.database(), logger: logger), now: now, withinDays: withinDays)
                let text: String
                switch format {
                case .table: text = SecretExpiryReport.table(items)
                case .csv: text = SecretExpiryReport.csv(items)
                case .html: text = SecretExpiryReport.html(items, generatedAt: now, withinDays: withinDays)
                case .json:
                    text = String(decoding: try SecretExpiryReportJSON.encode(items, generatedAt: now, withinDays: withinDays), as: UTF8.self) + "\n"
                }
                FileHandle.standardOutput.write(Data(text.utf8))
                urgent = items.contains { $0.status == .expired || $0.status == .expiring }
            }
            if urgent { throw ExitCode(1) }
        }
    }
}
