import CredentialCrypto
import AsyncHTTPClient
import Foundation
import GatewayApp
import MicrosoftSimulator
import NIOCore
import GatewayCore
import PostgresStorage
import Testing

/// The real `o365-gateway` executable, built by `swift test` next to the test bundle.
enum Executable {
    static var url: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("o365-gateway")
    }

    static func locate() -> URL {
        // The test runner may be inside an .xctest bundle folder or beside the products.
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("o365-gateway")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return url
    }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    /// The executable with `arguments`, and this process's environment minus any `O365GW_` setting plus `environment`.
    static func process(_ arguments: [String], environment: [String: String]) -> Process {
        let process = Process()
        process.executableURL = locate()
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("O365GW_") }
        env.merge(environment) { $1 }
        process.environment = env
        return process
    }

    /// `run` on a thread of its own, for a test whose servers run in this process: waiting for the child on a
    /// thread of Swift's small cooperative pool would starve the very servers the child talks to.
    static func runAside(_ arguments: [String], environment: [String: String] = [:], input: String? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try run(arguments, environment: environment, input: input) })
            }
        }
    }

    static func run(
        _ arguments: [String], environment: [String: String] = [:], input: String? = nil, timeout: Duration = .seconds(60)
    ) throws -> Result {
        let process = process(arguments, environment: environment)
        let out = Pipe(), err = Pipe(), stdin = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite(.timeLimit(.minutes(2))) struct CommandLineTests {
    @Test func helpNeverShowsSecretsFromTheEnvironment() async throws {
        let env = [
            "O365GW_ADMIN_TOKEN": "help-probe-admin-token-123456",
            "O365GW_ENCRYPTION_KEYS": "k1:\(Data(repeating: 3, count: 32).base64EncodedString())",
            "O365GW_DATABASE_URL": "postgres://u:help-probe-password@127.0.0.1:1/db",
        ]
        for command in [
            ["--help"], ["serve", "--help"], ["migrate", "--help"], ["reseal", "--help"], ["demo", "--help"],
            ["report", "--help"], ["report", "secret-expiry", "--help"],
        ] {
            let result = try await Executable.runAside(command, environment: env)
            #expect(result.status == 0, "\(command)")
            let text = result.stdout + result.stderr
            #expect(text.contains("USAGE"), "\(command)")
            for secret in env.values { #expect(!text.contains(secret), "\(command) shows a secret") }
        }
    }

    @Test func missingSettingsAreNamed() async throws {
        let result = try await Executable.runAside(["migrate"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("O365GW_DATABASE_URL is required"))
    }

    /// The executable reads the same settings: a bad value in the configuration file stops `serve` before anything
    /// starts, naming the key and the file; a misspelt flag is a usage error.
    @Test func badSettingsStopTheStart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("gateway.yaml").path
        try "utmstack:\n  ackTimeoutSeconds: 2\n".write(toFile: file, atomically: true, encoding: .utf8)
        let env = [
            "O365GW_DATABASE_URL": "postgres://u:p@127.0.0.1:1/db", "O365GW_ADMIN_TOKEN": "cli-settings-admin-token",
            "O365GW_ENCRYPTION_KEYS": "k1:" + Data(repeating: 3, count: 32).base64EncodedString(),
        ]
        let bad = try await Executable.runAside(["serve", "--config-file", file], environment: env)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("utmstack.ackTimeoutSeconds in \(file) must be a whole number of seconds from 5 to 3600"), "\(bad.stderr)")
        let typo = try await Executable.runAside(["migrate", "--database-timeout", "5"], environment: env)
        #expect(typo.status == 64)
        #expect(typo.stderr.contains("unknown option --database-timeout"))
    }

    @Test func serveRefusesAnOutdatedSchemaAndMigrateFixesIt() async throws {
        let db = try await TestDatabase.create("cli")
        let env = [
            "O365GW_DATABASE_URL": db.urlForTools + "?sslmode=disable",
            "O365GW_ENCRYPTION_KEYS": "k1:\(Data(repeating: 5, count: 32).base64EncodedString())",
            "O365GW_ADMIN_TOKEN": "cli-probe-admin-token-0123456789",
            "O365GW_LISTEN": "127.0.0.1:0",
        ]
        let refused = try await Executable.runAside(["serve"], environment: env)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("run `o365-gateway migrate`"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("cli-probe-admin-token"))
        let migrated = try await Executable.runAside(["migrate"], environment: env)
        #expect(migrated.status == 0 && migrated.stdout.contains("applied \(Migration.embedded.count) migration(s)"), "\(migrated.stderr)")
        let again = try await Executable.runAside(["migrate"], environment: env)
        #expect(again.status == 0 && again.stdout.contains("schema is current"))
    }

    /// The expiry report from the shell reads the database with no keys; its exit code says whether to act.
    @Test func theExpiryReportFromTheShell() async throws {
        let db = try await TestDatabase.create("report")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        try await TestDatabase.withClient(db) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: .random()), logger: quietLogger)
            var soon = newTenant()
            soon.name = "Soon <&> Co"
            soon.secretExpiresAt = Date().addingTimeInterval(3 * 86_400 + 3600)
            var fine = newTenant()
            fine.name = "Fine"
            fine.secretExpiresAt = Date().addingTimeInterval(300 * 86_400)
            _ = try await store.create(soon)
            _ = try await store.create(fine)
        }
        let env = ["O365GW_DATABASE_URL": db.urlForTools + "?sslmode=disable"]
        let table = try await Executable.runAside(["report", "secret-expiry", "--within-days", "7"], environment: env)
        #expect(table.status == 1, "something expires within 7 days: \(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("STATUS") == true && lines[1].hasPrefix("expiring  Soon <&> Co"), "\(table.stdout)")
        let json = try await Executable.runAside(["report", "secret-expiry", "--format", "json"], environment: env)
        let items = try #require(((try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [String: Any])?["items"] as? [[String: Any]])
        #expect(items.map { $0["name"] as? String } == ["Soon <&> Co", "Fine"] && items[0]["daysLeft"] as? Int == 3)
        let csv = try await Executable.runAside(["report", "secret-expiry", "--format", "csv"], environment: env)
        #expect(csv.stdout.hasPrefix(SecretExpiryReport.csvHeader))
        let html = try await Executable.runAside(["report", "secret-expiry", "--format", "html"], environment: env)
        #expect(html.stdout.contains("Soon &lt;&amp;&gt; Co") && html.stdout.hasPrefix("<!DOCTYPE html>"))
        let calm = try await Executable.runAside(["report", "secret-expiry", "--within-days", "1"], environment: env)
        #expect(calm.status == 0, "nothing within a day")
        let wrong = try await Executable.runAside(["report", "secret-expiry", "--format", "pdf"], environment: env)
        #expect(wrong.status != 0 && wrong.stderr.contains("pdf"))
    }

    /// `serve` exports the fleet's earliest expiry, for a one-line alert rule, and each tenant's expiry only when
    /// O365GW_METRICS_PER_TENANT asks for it (/metrics needs no token: by default no tenant id is in it), and the
    /// UTMStack series per destination (`default`, and a stored one once the router has started its forwarder).
    @Test(arguments: [false, true])
    func serveExportsTheExpiryTimestampAndTheForwardersPerDestination(perTenant: Bool) async throws {
        let db = try await TestDatabase.create("gauge")
        _ = try await Gateway.migrate(db, logger: quietLogger)
        let keySpec = "k1:\(Data(repeating: 9, count: 32).base64EncodedString())"
        let expiresAt = Date(timeIntervalSince1970: 1_900_000_000)
        let id = try await TestDatabase.withClient(db) { database in
            let store = PostgresTenantStore(database: database, sealer: CredentialSealer(keyRing: try KeyRing(parsing: Secret(keySpec))), logger: quietLogger)
            var tenant = newTenant()
            tenant.secretExpiresAt = expiresAt
            return try await store.create(tenant).id
        }
        let port = LocalPostgres.freePort()
        try await withSimulator(SimulatorConfiguration.generated(tenants: 0)) { _, microsoft in
            let running = try Executable.start(["serve"], environment: [
                "O365GW_DATABASE_URL": db.urlForTools + "?sslmode=disable", "O365GW_ENCRYPTION_KEYS": keySpec,
                "O365GW_ADMIN_TOKEN": "gauge-probe-admin-token-0123456789", "O365GW_LISTEN": "127.0.0.1:\(port)",
                "O365GW_UTMSTACK_SOCKET": "/tmp/o365gw-none/engine.sock", "O365GW_LOGIN_URL": microsoft.absoluteString,
                "O365GW_MANAGE_URL": microsoft.absoluteString, "O365GW_GRAPH_URL": microsoft.absoluteString,
                "O365GW_LOG_LEVEL": "warning", "O365GW_METRICS_PER_TENANT": "\(perTenant)",
            ])
            defer { running.terminate() }
            @Sendable func exported(_ lines: [String]) async throws -> Bool {
                try await eventually(timeout: .seconds(30)) {
                    guard let response = try? await HTTPClient.shared.get(url: "http://127.0.0.1:\(port)/metrics").get(),
                        let body = response.body
                    else { return false }
                    let text = String(buffer: body)
                    return lines.allSatisfy { text.contains($0) }
                }
            }
            let earliest = "o365gw_secret_expiry_earliest_timestamp_seconds 1900000000"
            #expect(try await exported([earliest, #"o365gw_utmstack_logs_delivered_total{destination="default"}"#]), "\(running.outputTail)")
            let metrics = String(buffer: try #require(try await HTTPClient.shared.get(url: "http://127.0.0.1:\(port)/metrics").get().body))
            let expiry = #"o365gw_secret_expiry_timestamp_seconds{tenant="\#(id)"} 1900000000"#
            #expect(metrics.contains(expiry) == perTenant)
            if !perTenant { #expect(!metrics.contains("\(id)"), "no tenant id in /metrics by default") }
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/destinations")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer gauge-probe-admin-token-0123456789")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"name": "eu", "kind": "socket", "socketPath": "/tmp/o365gw-none/eu.sock"}"#))
            #expect(try await HTTPClient.shared.execute(request, timeout: .seconds(10)).status == .created)
            let perDestination = ["sent", "delivered", "resent"].map { #"o365gw_utmstack_logs_\#($0)_total{destination="eu"}"# }
                + [#"o365gw_utmstack_held_bytes{destination="eu"}"#, #"o365gw_utmstack_connected{destination="eu"}"#]
            #expect(try await exported(perDestination), "the eu forwarder's series: \(running.outputTail)")
        }
    }
}
