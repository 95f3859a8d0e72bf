import Collection
import Configuration
import Foundation
import GatewayApp
import GatewayCore
import Testing
import UTMStackForwarder

/// The one configuration system (``Settings``): its sources and their order, its checks, its secrets, and that
/// docs/configuration.md and the code's defaults say what the declarations say.
@Suite struct SettingsTests {
    static let required = [
        "O365GW_DATABASE_URL": "postgres://gw:settings-probe-password@127.0.0.1:5432/gw",
        "O365GW_ENCRYPTION_KEYS": "k1:" + Data(repeating: 7, count: 32).base64EncodedString(),
        "O365GW_ADMIN_TOKEN": "settings-probe-admin-token",
    ]

    static func file(_ name: String, _ text: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The error `body` throws, as a ``GatewayError``.
    static func failure(_ body: () async throws -> Void) async -> GatewayError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? GatewayError
        }
    }

    @Test func docsListEverySettingAsDeclared() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/configuration.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let begin = try #require(text.range(of: "<!-- settings: begin -->\n"), "docs/configuration.md lost its settings markers")
        let end = try #require(text.range(of: "\n<!-- settings: end -->"))
        let table = String(text[begin.upperBound..<end.lowerBound])
        #expect(table == Setting.markdownTable, "docs/configuration.md's table differs from the settings; it should be:\n\(Setting.markdownTable)")
    }

    /// The names shown (variable, flag, file key) are the ones swift-configuration's providers look up.
    @Test(arguments: Setting.all)
    func namesAreTheProvidersEncoding(_ setting: Setting) throws {
        let key = AbsoluteConfigKey(setting.key.split(separator: ".").map(String.init))
        let environment = EnvironmentVariablesProvider(environmentVariables: [setting.variable: "x"]).prefixKeys(with: "o365gw")
        #expect(try environment.value(forKey: key, type: .string).value?.content == .string("x"))
        if setting != .adminURL {  // the tenants commands' own --url
            let flags = CommandLineArgumentsProvider(arguments: ["o365-gateway", setting.flag, "x"])
            #expect(try flags.value(forKey: key, type: .string).value?.content == .string("x"))
        }
    }

    @Test func theDefaultsAreTheCodesDefaults() async throws {
        let configuration = try await Settings.load(.serve, environment: Self.required).gatewayConfiguration()
        let collection = CollectionSettings()
        #expect(configuration.collection.pollInterval == collection.pollInterval)
        #expect(configuration.collection.backfill == collection.backfill)
        #expect(configuration.collection.trailingRelist == collection.trailingRelist)
        #expect(configuration.collection.workers == collection.workers)
        #expect(configuration.collection.blobBufferBytes == collection.blobBufferBytes)
        #expect(configuration.collection.maxBlobBytes == collection.maxBlobBytes)
        let forwarder = ForwarderConfiguration()
        guard case .engineSocket(let socket) = configuration.forwarder.endpoint else {
            Issue.record("the default is the engine's socket")
            return
        }
        #expect(socket == ForwarderConfiguration.defaultSocketPath)
        #expect(configuration.forwarder.inFlightByteBudget == forwarder.inFlightByteBudget)
        #expect(configuration.forwarder.ackTimeout == forwarder.ackTimeout)
        #expect(configuration.forwarder.keepaliveInterval == forwarder.keepaliveInterval)
        #expect(configuration.forwarder.maxMessageBytes == ForwarderConfiguration.grpcDefaultMaxMessageBytes)
        #expect(configuration.microsoft.requestsPerMinute == MicrosoftSettings().requestsPerMinute)
        #expect(configuration.alertPolicy == (try ExpiryAlertPolicy()))
        #expect(configuration.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(configuration.database.timeout == .seconds(15))
        #expect(configuration.alertWebhook == nil && configuration.adminTLS == nil)
    }

    @Test func theFlagWinsThenTheEnvironmentThenTheFile() async throws {
        let yaml = try Self.file("gateway.yaml", """
            pollIntervalSeconds: 30
            backfillHours: 2
            workers: 4
            utmstack:
              inflightBytes: 1048576
            utmstack.ackTimeoutSeconds: 45
            secretAlertDays: [10, 3]
            """)
        var environment = Self.required
        environment["O365GW_CONFIG_FILE"] = yaml
        environment["O365GW_BACKFILL_HOURS"] = "5"
        environment["O365GW_WORKERS"] = "6"
        let settings = try await Settings.load(.serve, arguments: ["--workers", "8", "--relist-minutes=15"], environment: environment)
        #expect(try settings.number(.pollInterval) == 30)
        #expect(try settings.number(.backfillHours) == 5)
        #expect(try settings.number(.workers) == 8)
        #expect(try settings.number(.relistMinutes) == 15)
        #expect(try settings.number(.utmstackInFlightBytes) == 1_048_576)
        #expect(try settings.number(.utmstackAckTimeout) == 45)
        #expect(try settings.numbers(.secretAlertDays) == [10, 3])
        #expect(try settings.number(.maxBlobBytes) == 134_217_728)
    }

    @Test func aJSONFileIsReadAsJSON() async throws {
        let json = try Self.file("gateway.json", #"{"listen": "0.0.0.0:9090", "database": {"timeoutSeconds": 40}, "encryptionKeys": ["k2:\#(Data(repeating: 1, count: 32).base64EncodedString())"]}"#)
        var environment = Self.required
        environment["O365GW_ENCRYPTION_KEYS"] = nil
        let settings = try await Settings.load(.serve, arguments: ["--config-file", json], environment: environment)
        let configuration = try settings.gatewayConfiguration()
        #expect(configuration.listen == ListenAddress(host: "0.0.0.0", port: 9090))
        #expect(configuration.database.timeout == .seconds(40))
        #expect(configuration.keyRing.activeKeyID == "k2")
    }

    /// Every kind of bad value is a startup error that names where it came from and what is accepted.
    @Test(arguments: [
        (["O365GW_POLL_INTERVAL_SECONDS": "soon"], [String](), "O365GW_POLL_INTERVAL_SECONDS must be a whole number of seconds from 1 to 86400"),
        (["O365GW_BACKFILL_HOURS": "169"], [], "O365GW_BACKFILL_HOURS must be a whole number of hours from 0 to 168"),
        ([:], ["--workers", "0"], "--workers must be a whole number of polls from 1 to 10000"),
        (["O365GW_SECRET_ALERT_DAYS": "30,soon"], [], "O365GW_SECRET_ALERT_DAYS must be a comma-separated list of whole numbers"),
        (["O365GW_LOG_LEVEL": "loud"], [], "O365GW_LOG_LEVEL must be trace, debug, info, notice, warning or error"),
        (["O365GW_LISTEN": "8080"], [], "O365GW_LISTEN must be host:port"),
        (["O365GW_PUBLISHER_ID": "contoso"], [], "O365GW_PUBLISHER_ID must be GUID"),
        ([:], ["--manage-url", "ftp://x"], "--manage-url must be URL"),
        (["O365GW_UTMSTACK_ADDRESS": "utm.example.com:50051"], [], "O365GW_UTMSTACK_CONNECTION_KEY is required with O365GW_UTMSTACK_ADDRESS"),
        ([:], ["--pol-interval-seconds", "5"], "unknown option --pol-interval-seconds"),
        ([:], ["--workers"], "--workers needs a value"),
        ([:], ["--secret-alert-days", "14,0"], "--secret-alert-days must be a comma-separated list of whole days from 1 to 3650"),
        ([:], ["--reseal-me"], "unknown option --reseal-me"),
    ])
    func badValuesStopTheStartNamingTheirSource(_ environment: [String: String], _ arguments: [String], _ message: String) async {
        let error = await Self.failure {
            let settings = try await Settings.load(.serve, arguments: arguments, environment: Self.required.merging(environment) { $1 })
            _ = try settings.logLevel()
            _ = try settings.gatewayConfiguration()
        }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "no error")")
    }

    @Test func badValuesInTheFileNameTheKeyAndTheFile() async throws {
        let yaml = try Self.file("bad.yaml", "utmstack:\n  keepaliveSeconds: often\n")
        let error = await Self.failure {
            _ = try await Settings.load(.serve, environment: Self.required.merging(["O365GW_CONFIG_FILE": yaml]) { $1 }).gatewayConfiguration()
        }
        #expect(error?.message == "utmstack.keepaliveSeconds in \(yaml) must be a whole number of seconds from 1 to 3600")
        let typo = try Self.file("typo.yaml", "database:\n  timeoutSecond: 5\n")
        let unknown = await Self.failure { _ = try await Settings.load(.migrate, arguments: ["--config-file", typo], environment: [:]) }
        #expect(unknown?.code == "unknown_setting")
        #expect(unknown?.message.hasPrefix("database.timeoutSecond in \(typo) is no setting") == true)
        // A key of another command is refused too: migrate never reads the admin token.
        let foreign = try Self.file("foreign.json", #"{"adminToken": "x"}"#)
        let refused = await Self.failure { _ = try await Settings.load(.migrate, arguments: ["--config-file=\(foreign)"], environment: [:]) }
        #expect(refused?.code == "unknown_setting")
        let missing = await Self.failure { _ = try await Settings.load(.migrate, environment: ["O365GW_CONFIG_FILE": "/nonexistent.yaml"]) }
        #expect(missing?.code == "invalid_config_file")
    }

    /// A secret's value appears in no error, whichever source it came from; a bad one still names its source.
    @Test func secretsStayOutOfErrors() async throws {
        let password = "p4ss-never-shown"
        let yaml = try Self.file("secret.yaml", "database:\n  url: mysql://gw:\(password)@db/gw\n")
        for (environment, arguments, source) in [
            (["O365GW_DATABASE_URL": "mysql://gw:\(password)@db/gw"], [String](), "O365GW_DATABASE_URL"),
            ([:], ["--database-url", "mysql://gw:\(password)@db/gw"], "--database-url"),
            (["O365GW_CONFIG_FILE": yaml], [], "database.url in \(yaml)"),
        ] {
            let error = await Self.failure {
                _ = try await Settings.load(.migrate, arguments: arguments, environment: environment).database()
            }
            #expect(error?.code == "invalid_database_url")
            #expect(error?.message.contains(source) == true, "\(error?.message ?? "")")
            #expect(error?.message.contains(password) == false)
        }
        let webhook = "https://hooks.example.com/services/\(password)"
        let settings = try await Settings.load(.serve, environment: Self.required.merging(["O365GW_ALERT_WEBHOOK_URL": webhook]) { $1 })
        #expect(try settings.secret(.alertWebhookURL)?.unredacted == webhook)
        #expect(!"\(try settings.secret(.alertWebhookURL)!)".contains(password))
    }

    @Test func requiredSettingsSayEveryWayToSetThem() async {
        let error = await Self.failure { _ = try await Settings.load(.reseal, environment: Self.required.filter { $0.key != "O365GW_ENCRYPTION_KEYS" }).keyRing() }
        #expect(error?.code == "missing_setting")
        #expect(error?.message == "O365GW_ENCRYPTION_KEYS is required; set it, pass --encryption-keys, or write encryptionKeys in the --config-file")
    }

    @Test func unknownVariablesAreWarnedAbout() async throws {
        let settings = try await Settings.load(.migrate, environment: ["O365GW_POLL_INTERVAL": "5", "O365GW_WORKERS": "3", "PATH": "/bin"])
        #expect(settings.warnings == ["O365GW_POLL_INTERVAL is set but is no setting of the gateway (docs/configuration.md); it is ignored"])
    }

    @Test func helpListsEachCommandsSettingsWithinEightyColumns() {
        let help = Setting.help(for: .migrate)
        #expect(help.contains("--database-timeout-seconds <seconds>"))
        #expect(help.contains("O365GW_DATABASE_TIMEOUT_SECONDS, default 15:"))
        #expect(!help.contains("--workers"))
        #expect(help.split(separator: "\n").allSatisfy { $0.count <= 79 })
        #expect(Setting.help(for: .serve).contains("--utmstack-inflight-bytes <bytes>"))
    }

    /// What only this machine can reach: addresses in 127.0.0.0/8, ::1 and the name localhost, nothing that merely
    /// looks like them.
    @Test func loopbackIsThisMachineOnly() {
        for host in ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "0:0:0:0:0:0:0:1"] {
            #expect(Loopback.contains(host: host), "\(host)")
        }
        for host in ["127.example.com", "localhost.example.com", "localhost.", "128.0.0.1", "10.0.0.1", "::2", "0.0.0.0", "::", "::ffff:10.0.0.1", ""] {
            #expect(!Loopback.contains(host: host), "\(host)")
        }
    }

    /// The tenants commands' address: plain http only to loopback unless insecure; never a user name or password.
    @Test func theAdminURLKeepsTheTokenOffTheNetwork() async throws {
        func endpoint(_ url: String, insecure: Bool = false) async -> Result<String, GatewayError> {
            do {
                let settings = try await Settings.load(.tenants, explicit: [.adminURL: url], environment: [:])
                return .success(try settings.adminEndpoint(insecure: insecure).absoluteString)
            } catch {
                return .failure(error as! GatewayError)
            }
        }
        for url in ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080/", "https://gw.example:8443/o365"] {
            #expect((try? await endpoint(url).get()) == url, "\(url)")
        }
        guard case .failure(let plain) = await endpoint("http://gw.example:8080") else { Issue.record("accepted"); return }
        #expect(plain.code == "insecure_admin_url" && plain.message.hasPrefix("--url is plain http:// to gw.example"), "\(plain.message)")
        #expect((try? await endpoint("http://gw.example:8080", insecure: true).get()) == "http://gw.example:8080")
        for url in ["https://user:url-secret-7@gw.example", "https://user@gw.example", "http://127.0.0.1:8080/?token=x", "ftp://gw.example"] {
            guard case .failure(let error) = await endpoint(url) else { Issue.record("\(url) accepted"); continue }
            #expect(!error.message.contains("url-secret-7") && error.message.hasPrefix("--url"), "\(error.message)")
        }
    }
}
