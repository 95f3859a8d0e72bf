import Configuration
import Foundation
import GatewayCore
import Yams

/// The commands that read settings; each setting says which of them use it.
public enum SettingsCommand: String, Sendable, CaseIterable {
    case serve, migrate, reseal, report, tenants
}

/// One setting of the gateway, declared once: its key, its form, its default and unit, and what it means. Its
/// environment variable (`O365GW_` + the key in upper snake case), its flag (the key in dash case) and its key in the
/// configuration file all derive from the key, the way swift-configuration's providers encode it; `--help`,
/// docs/configuration.md and the checks of every value come from this declaration.
public struct Setting: Sendable, Hashable, CustomStringConvertible {
    public enum Form: Sendable, Hashable {
        /// A whole number in a range.
        case number(ClosedRange<Int>)
        /// One text value; ``Setting/accepted`` says which.
        case text
        /// A list: comma-separated in the environment and on the command line, a list in the file.
        case list
        /// A list of whole numbers, written like ``list``.
        case numbers
    }

    /// The configuration key: dot-separated components in camel case (`utmstack.inflightBytes`).
    public let key: String
    public let form: Form
    /// The unit (`seconds`, `bytes`) or the accepted form (`host:port`), as shown in help and the docs.
    public let accepted: String
    /// The default, as written in the environment; nil when there is none.
    public let defaultValue: String?
    /// What the docs say when there is no default (`required for serve, migrate`, `unset (plain HTTP)`).
    public let whenUnset: String?
    /// Never printed, logged or put in an error message.
    public let isSecret: Bool
    public let commands: Set<SettingsCommand>
    public let meaning: String
    private let flagOverride: String?

    init(
        _ key: String, form: Form = .text, _ accepted: String, default defaultValue: String? = nil,
        whenUnset: String? = nil, secret: Bool = false, flag: String? = nil, _ commands: Set<SettingsCommand>,
        _ meaning: String
    ) {
        self.key = key
        self.flagOverride = flag
        self.form = form
        self.accepted = accepted
        self.defaultValue = defaultValue
        self.whenUnset = whenUnset
        self.isSecret = secret
        self.commands = commands
        self.meaning = meaning
    }

    /// `O365GW_UTMSTACK_INFLIGHT_BYTES`.
    public var variable: String { "O365GW_" + words.joined(separator: "_").uppercased() }
    /// `--utmstack-inflight-bytes`.
    public var flag: String { flagOverride ?? "--" + words.joined(separator: "-").lowercased() }
    public var description: String { variable }

    var configKey: AbsoluteConfigKey { AbsoluteConfigKey(key.split(separator: ".").map(String.init)) }

    /// The key's words: its components split at each lower-to-upper case change.
    private var words: [String] {
        key.split(separator: ".").flatMap { component -> [String] in
            var words: [String] = []
            var word = ""
            for character in component {
                if character.isUppercase, let last = word.last, last.isLowercase || last.isNumber {
                    words.append(word)
                    word = ""
                }
                word.append(character)
            }
            return words + [word]
        }
    }
}

extension Setting {
    private static let database: Set<SettingsCommand> = [.serve, .migrate, .reseal, .report]
    private static let serveOnly: Set<SettingsCommand> = [.serve]

    public static let configFile = Setting(
        "configFile", "path", whenUnset: "unset (no file)", database,
        "a YAML or JSON file of settings, by their keys in docs/configuration.md (nested maps or dotted keys); the environment and then the flags win over it; an unknown key in it is an error")
    public static let databaseURL = Setting(
        "database.url", "URL", whenUnset: "required for serve, migrate, reseal, report", secret: true, database,
        "postgres://user:pass@host:port/db?sslmode=...: disable, require (encrypted, the certificate unchecked: warned about), verify-ca (signed by the CA) or verify-full (signed by the CA and naming the host; what managed services document); sslrootcert=path gives the CA like O365GW_DATABASE_CA_FILE")
    public static let databaseCAFile = Setting(
        "database.caFile", "path", whenUnset: "sslrootcert, else the system trust store", database,
        "PEM file of the CA that signed PostgreSQL's certificate (a managed service's or a private one), for sslmode=verify-full or verify-ca")
    public static let databaseTimeout = Setting(
        "database.timeoutSeconds", form: .number(1...3600), "seconds", default: "15", database,
        "how long one database statement or transaction may take: the server's statement_timeout and idle_in_transaction_session_timeout, and the client's own deadline (docs/failure-handling.md); locks wait at most 5 s")
    public static let logLevel = Setting(
        "logLevel", "trace, debug, info, notice, warning or error", default: "info", database, "the least severe log line written (to standard error)")
    public static let encryptionKeys = Setting(
        "encryptionKeys", form: .list, "keyId:base64(32 bytes), ...", whenUnset: "required for serve, reseal", secret: true,
        [.serve, .reseal], "the keys that seal stored credentials; the first seals, every one opens (key ids are 1 to 32 characters of A-Z a-z 0-9 . _ -)")
    public static let adminToken = Setting(
        "adminToken", "text, at least 16 characters", whenUnset: "required for serve, tenants", secret: true, [.serve, .tenants],
        "bearer token of the admin API (the tenants commands send it)")
    public static let listen = Setting(
        "listen", "host:port", default: "127.0.0.1:8080", serveOnly, "admin API address")
    public static let tlsCertFile = Setting(
        "tls.certFile", "path", whenUnset: "unset (plain HTTP)", serveOnly,
        "PEM certificate (chain) of the admin API; with the key it serves HTTPS only (TLS 1.2 or later). Both files are read again every 5 s: a renewal replaced in place (cert-manager) is served to new connections without a restart. Clients send customers' secrets to it: without TLS keep it on loopback (the default) or behind a TLS proxy; serve warns when it listens beyond this machine in plain HTTP")
    public static let tlsKeyFile = Setting(
        "tls.keyFile", "path", whenUnset: "unset (plain HTTP)", serveOnly, "unencrypted PEM private key of the admin API's certificate")
    public static let metricsPerTenant = Setting(
        "metrics.perTenant", "true or false", default: "false", serveOnly,
        "whether /metrics has series per tenant (o365gw_secret_expiry_timestamp_seconds{tenant}); /metrics needs no token, so by default it names no tenant and shows the fleet's earliest expiry only")
    public static let loginURL = Setting(
        "loginUrl", "URL", whenUnset: "per-cloud hosts", serveOnly,
        "replaces the Microsoft sign-in host of every cloud (a proxy, the simulator); http:// is accepted only in these three")
    public static let manageURL = Setting(
        "manageUrl", "URL", whenUnset: "per-cloud hosts", serveOnly, "replaces the Activity API host of every cloud")
    public static let graphURL = Setting(
        "graphUrl", "URL", whenUnset: "per-cloud hosts", serveOnly, "replaces the Microsoft Graph host of every cloud")
    public static let publisherID = Setting(
        "publisherId", "GUID", whenUnset: "none", serveOnly,
        "default PublisherIdentifier (the MSSP's own tenant GUID); a tenant's publisherId wins")
    public static let requestsPerMinute = Setting(
        "requestsPerMinute", form: .number(1...1_000_000), "requests per minute", default: "1800", serveOnly,
        "Activity API requests per tenant per minute, shared by its content types (Microsoft's quota is 2,000 per tenant)")
    public static let pollInterval = Setting(
        "pollIntervalSeconds", form: .number(1...86_400), "seconds", default: "60", serveOnly, "how often each (tenant, content type) is polled")
    public static let backfillHours = Setting(
        "backfillHours", form: .number(0...168), "hours", default: "24", serveOnly, "how far back a newly onboarded tenant is collected")
    public static let relistMinutes = Setting(
        "relistMinutes", form: .number(0...1440), "minutes", default: "60", serveOnly, "trailing period listed again each poll to catch late blobs")
    public static let workers = Setting(
        "workers", form: .number(1...10_000), "polls", default: "32", serveOnly,
        "polls running at once in one replica (it may hold many more units; they take turns)")
    public static let blobBufferBytes = Setting(
        "blobBufferBytes", form: .number(1 << 20...1 << 34), "bytes", default: "33554432", serveOnly,
        "bytes of fetched blobs held before they are handed to the forwarder, all collectors together; one fetch at a time (the oldest still receiving) may exceed it")
    public static let maxBlobBytes = Setting(
        "maxBlobBytes", form: .number(1 << 20...1 << 32), "bytes", default: "134217728", serveOnly,
        "the largest response accepted from Microsoft; a larger blob fails its poll (blob_too_large), it is not skipped")
    public static let secretAlertDays = Setting(
        "secretAlertDays", form: .numbers, "days, ...", default: "30,14,7,1", serveOnly,
        "days before a secret (or certificate) expires when it is alerted; then daily once expired. Each stage is alerted once per credential, by one replica for the fleet (docs/expiry.md)")
    public static let alertWebhookURL = Setting(
        "alertWebhookUrl", "https:// URL", whenUnset: "unset (UTMStack only)", secret: true, serveOnly,
        "also post expiry alerts as JSON here, with retries; a Slack or Microsoft Teams incoming webhook URL works as it is. http:// only to 127.0.0.1 or localhost")
    public static let utmstackSocket = Setting(
        "utmstack.socket", "path", default: "/workdir/sockets/engine_server.sock", serveOnly,
        "Unix socket of the UTMStack engine (plugins.Engine/Input)")
    public static let utmstackAddress = Setting(
        "utmstack.address", "host:port", whenUnset: "unset (the socket)", serveOnly,
        "UTMStack's network service (plugins.Integration/ProcessLog, TLS); when set, replaces the socket")
    public static let utmstackCAFile = Setting(
        "utmstack.caFile", "path", whenUnset: "system trust store", serveOnly, "PEM CA that signed UTMStack's certificate (network path)")
    public static let utmstackServerName = Setting(
        "utmstack.serverName", "host name", whenUnset: "the host", serveOnly,
        "name to verify UTMStack's certificate against and send as SNI, when it differs from the host")
    public static let utmstackConnectionKey = Setting(
        "utmstack.connectionKey", "text", whenUnset: "required with the address", secret: true, serveOnly,
        "UTMStack federation connection key, sent as connection-key metadata (network path)")
    public static let utmstackInFlightBytes = Setting(
        "utmstack.inflightBytes", form: .number(65_536...1 << 34), "bytes", default: "16777216", serveOnly,
        "bytes of logs held awaiting acknowledgement before collectors wait")
    public static let utmstackAckTimeout = Setting(
        "utmstack.ackTimeoutSeconds", form: .number(5...3600), "seconds", default: "30", serveOnly,
        "the longest the oldest log in flight waits without any acknowledgement before the connection is given up and its logs resent on a new one")
    public static let utmstackKeepalive = Setting(
        "utmstack.keepaliveSeconds", form: .number(1...3600), "seconds", default: "10", serveOnly,
        "with logs in flight and nothing acknowledged for this long, UTMStack is sent a PING; unanswered within as long, the connection is given up")
    public static let utmstackMaxMessageBytes = Setting(
        "utmstack.maxMessageBytes", form: .number(1024...1 << 30), "bytes", default: "4194304", serveOnly,
        "the largest log the engine takes (grpc-go's default); a larger one is set aside as a dead letter without being sent")
    public static let destinationSocketDirectories = Setting(
        "destination.socketDirectories", form: .list, "absolute paths, ...", whenUnset: "the directory of O365GW_UTMSTACK_SOCKET",
        serveOnly,
        "the directories a stored socket destination's socketPath must be directly in, not a symbolic link (docs/destinations.md): the admin API can point the gateway at no other Unix socket")
    public static let destinationAllowedHosts = Setting(
        "destination.allowedHosts", form: .list, "host[:port], *.domain[:port], ...", whenUnset: "any host and port", serveOnly,
        "the hosts (and ports) a stored network destination may point to: a name or an address, *.domain for any name below the domain, * for any host; no port or :* for any port ([v6 address]:port in brackets)")
    public static let adminURL = Setting(
        "adminUrl", "http(s)://host:port", default: "http://127.0.0.1:8080", flag: "--url", [.tenants],
        "where the tenants commands find the admin API; plain http:// only to 127.0.0.0/8, ::1 or localhost unless --insecure, no user:password@, and no redirect is followed (docs/cli.md)")

    /// Every setting, in the order of docs/configuration.md and `--help`.
    public static let all: [Setting] = [
        configFile, databaseURL, databaseCAFile, databaseTimeout, logLevel, encryptionKeys, adminToken, listen,
        tlsCertFile, tlsKeyFile, metricsPerTenant, loginURL, manageURL, graphURL, publisherID, requestsPerMinute,
        pollInterval, backfillHours, relistMinutes, workers, blobBufferBytes, maxBlobBytes, secretAlertDays,
        alertWebhookURL, utmstackSocket, utmstackAddress, utmstackCAFile, utmstackServerName, utmstackConnectionKey,
        utmstackInFlightBytes, utmstackAckTimeout, utmstackKeepalive, utmstackMaxMessageBytes,
        destinationSocketDirectories, destinationAllowedHosts, adminURL,
    ]

    /// The default as a whole number (settings of the ``Form/number(_:)`` form).
    var defaultNumber: Int? { defaultValue.flatMap { Int($0) } }
}

/// The settings of one command, read through swift-configuration from three sources: the command line, the
/// environment (`O365GW_...`), and an optional YAML or JSON file (`--config-file`, `O365GW_CONFIG_FILE`); the first
/// that has a value wins, else the setting's default. Every value is checked against its setting when it is read,
/// and an error names where it came from (the flag, the variable, or the key and file) and what is accepted; never
/// the value itself.
public struct Settings: Sendable {
    struct Source: Sendable {
        enum Origin: Sendable { case commandLine, environment, file(String) }
        let origin: Origin
        let provider: any ConfigProvider

        func name(of setting: Setting) -> String {
            switch origin {
            case .commandLine: setting.flag
            case .environment: setting.variable
            case .file(let path): "\(setting.key) in \(path)"
            }
        }
    }

    public let command: SettingsCommand
    let sources: [Source]
    /// Things worth a warning once logging is set up (an `O365GW_` variable no setting has).
    public let warnings: [String]

    /// Reads the settings of `command`.
    /// - Parameters:
    ///   - arguments: the command line's setting flags (`--flag value` or `--flag=value`), as left by the command's
    ///     own options; a flag no setting of the command has is an error.
    ///   - explicit: values the command parsed itself (such as the tenants commands' `--url`), winning over all.
    public static func load(
        _ command: SettingsCommand, arguments: [String] = [], explicit: [Setting: String] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> Settings {
        let known = Setting.all.filter { $0.commands.contains(command) }
        try checkFlags(arguments, known: known, command: command)
        let secretFlags = Set(known.filter(\.isSecret).map(\.flag))
        let secretVariables = Set(Setting.all.filter(\.isSecret).map(\.variable))
        var sources = [
            Source(
                origin: .commandLine,
                provider: InMemoryProvider(
                    name: "explicit", values: Dictionary(uniqueKeysWithValues: explicit.map { setting, value in
                        (setting.configKey, ConfigValue(.string(value), isSecret: setting.isSecret))
                    }))),
            Source(
                origin: .commandLine,
                provider: CommandLineArgumentsProvider(
                    arguments: ["o365-gateway"] + arguments, secretsSpecifier: .specific(secretFlags))),
            Source(
                origin: .environment,
                provider: EnvironmentVariablesProvider(
                    environmentVariables: environment, secretsSpecifier: .specific(secretVariables)
                ).prefixKeys(with: "o365gw")),
        ]
        let partial = Settings(command: command, sources: sources, warnings: [])
        if command != .tenants, let path = try partial.text(.configFile) {
            sources.append(Source(origin: .file(path), provider: try await configurationFile(path, known: known)))
        }
        let variables = Set(Setting.all.map(\.variable))
        let warnings = environment.keys.sorted().filter { $0.hasPrefix("O365GW_") && !variables.contains($0) }.map {
            "\($0) is set but is no setting of the gateway (docs/configuration.md); it is ignored"
        }
        return Settings(command: command, sources: sources, warnings: warnings)
    }

    /// Every flag must be one of the command's settings and have one value; swift-configuration's own parser
    /// would take a misspelt flag as a key nobody reads.
    static func checkFlags(_ arguments: [String], known: [Setting], command: SettingsCommand) throws {
        let flags = Set(known.map(\.flag))
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            guard argument.hasPrefix("--"), flags.contains(name) else {
                throw GatewayError(
                    .invalidInput, code: "unknown_option",
                    "\(argument.hasPrefix("-") ? "unknown option \(name)" : "unexpected argument \(argument.prefix(40))"); `o365-gateway \(command.rawValue) --help` lists the settings")
            }
            if argument.contains("=") {
                index += 1
                continue
            }
            guard index + 1 < arguments.endIndex, !arguments[index + 1].hasPrefix("--") else {
                throw GatewayError(.invalidInput, code: "missing_value", "\(name) needs a value")
            }
            index += 2
        }
    }

    /// The configuration file's provider, after checking that every key in it is a setting of the command (a
    /// misspelt key would otherwise be ignored).
    static func configurationFile(_ path: String, known: [Setting]) async throws -> any ConfigProvider {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw GatewayError(.invalidInput, code: "invalid_config_file", "O365GW_CONFIG_FILE \(path) cannot be read")
        }
        let tree: Any?
        do {
            tree = try Yams.load(yaml: text)
        } catch {
            throw GatewayError(.invalidInput, code: "invalid_config_file", "\(path) is not valid YAML or JSON")
        }
        guard let map = tree as? [String: Any] else {
            throw GatewayError(.invalidInput, code: "invalid_config_file", "\(path) must be a map of settings (docs/configuration.md)")
        }
        func keys(_ map: [String: Any], _ prefix: String) -> [String] {
            map.flatMap { key, value in
                (value as? [String: Any]).map { keys($0, prefix + key + ".") } ?? [prefix + key]
            }
        }
        let accepted = Set(known.map(\.key)).subtracting([Setting.configFile.key])
        if let unknown = keys(map, "").sorted().first(where: { !accepted.contains($0) }) {
            throw GatewayError(
                .invalidInput, code: "unknown_setting",
                "\(unknown) in \(path) is no setting of this command; docs/configuration.md lists the keys")
        }
        let secrets = Set(Setting.all.filter(\.isSecret).map(\.key))
        do {
            if path.lowercased().hasSuffix(".json") {
                return try await FileProvider<JSONSnapshot>(
                    parsingOptions: .init(secretsSpecifier: .dynamic { key, _ in secrets.contains(key) }), filePath: .init(path))
            }
            return try await FileProvider<YAMLSnapshot>(
                parsingOptions: .init(secretsSpecifier: .dynamic { key, _ in secrets.contains(key) }), filePath: .init(path))
        } catch {
            throw GatewayError(.invalidInput, code: "invalid_config_file", "\(path) cannot be read as settings: a value is neither a scalar nor a list")
        }
    }

    // MARK: Typed reads

    /// The first source's value of `setting` as `type`, with the name of where it came from.
    private func lookup(_ setting: Setting, _ type: ConfigType) throws -> (content: ConfigContent, from: String)? {
        precondition(setting.commands.contains(command), "\(setting.key) is no setting of \(command)")
        for source in sources {
            let result: LookupResult
            do {
                result = try source.provider.value(forKey: setting.configKey, type: type)
            } catch {
                throw invalid(setting, from: source.name(of: setting))
            }
            guard let value = result.value else { continue }
            if case .string(let text) = value.content, text.isEmpty { continue }
            return (value.content, source.name(of: setting))
        }
        return nil
    }

    func invalid(_ setting: Setting, from name: String) -> GatewayError {
        let expected: String
        switch setting.form {
        case .number(let range): expected = "a whole number of \(setting.accepted) from \(range.lowerBound) to \(range.upperBound)"
        case .numbers: expected = "a comma-separated list of whole numbers (\(setting.accepted))"
        case .list: expected = "a comma-separated list (\(setting.accepted))"
        case .text: expected = setting.accepted
        }
        return GatewayError(.invalidInput, code: "invalid_setting", "\(name) must be \(expected)")
    }

    /// A whole number: the first source's, else the default.
    public func number(_ setting: Setting) throws -> Int {
        guard case .number(let range) = setting.form, let fallback = setting.defaultNumber else {
            preconditionFailure("\(setting.key) is not a number with a default")
        }
        guard let (content, from) = try lookup(setting, .int) else { return fallback }
        guard case .int(let value) = content, range.contains(value) else { throw invalid(setting, from: from) }
        return value
    }

    /// A text value, else the default (nil when there is none).
    public func text(_ setting: Setting) throws -> String? {
        precondition(!setting.isSecret, "\(setting.key) is a secret: read it with secret(_:)")
        return try textContent(setting)
    }

    private func textContent(_ setting: Setting) throws -> String? {
        guard let (content, from) = try lookup(setting, .string) else { return setting.defaultValue }
        guard case .string(let value) = content else { throw invalid(setting, from: from) }
        return value
    }

    /// A secret, never shown.
    public func secret(_ setting: Setting) throws -> Secret? {
        precondition(setting.isSecret)
        if case .list = setting.form { return try list(setting).map { Secret($0.joined(separator: ",")) } }
        return try textContent(setting).map(Secret.init)
    }

    /// A secret that must be set; the error says every way to set it.
    public func requiredSecret(_ setting: Setting) throws -> Secret {
        guard let value = try secret(setting), !value.isEmpty else { throw missing(setting) }
        return value
    }

    public func missing(_ setting: Setting) -> GatewayError {
        let ways = command == .tenants ? "set it or give --token-file" : "set it, pass \(setting.flag), or write \(setting.key) in the --config-file"
        return GatewayError(.invalidInput, code: "missing_setting", "\(setting.variable) is required; \(ways)")
    }

    /// A list, else the default split at commas.
    public func list(_ setting: Setting) throws -> [String]? {
        guard let (content, from) = try lookup(setting, .stringArray) else {
            return setting.defaultValue.map { $0.split(separator: ",").map(String.init) }
        }
        guard case .stringArray(let values) = content, !values.isEmpty else { throw invalid(setting, from: from) }
        return values.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// A list of whole numbers, else the default.
    public func numbers(_ setting: Setting) throws -> [Int] {
        guard let (content, from) = try lookup(setting, .intArray) else {
            return (setting.defaultValue ?? "").split(separator: ",").compactMap { Int($0) }
        }
        guard case .intArray(let values) = content, !values.isEmpty else { throw invalid(setting, from: from) }
        return values
    }

    /// Like ``parsed(_:_:)``, for a setting without which the command cannot run.
    public func required<T>(_ setting: Setting, _ parse: (String) throws -> T?) throws -> T {
        guard let value = try parsed(setting, parse) else { throw missing(setting) }
        return value
    }

    /// A value turned into `T` by `parse`, which returns nil (or throws a ``GatewayError``) when the text is not
    /// one; both become an error naming where the value came from.
    public func parsed<T>(_ setting: Setting, _ parse: (String) throws -> T?) throws -> T? {
        guard let text = try setting.isSecret ? secret(setting)?.unredacted : text(setting) else { return nil }
        return try checked(setting) {
            guard let value = try parse(text) else { throw invalid(setting, from: try origin(of: setting)) }
            return value
        }
    }

    /// `body`'s result; a ``GatewayError`` it throws about `setting` (whose message names the environment variable,
    /// as the parsers do) is made to name where the value came from instead.
    public func checked<T>(_ setting: Setting, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as GatewayError where error.code != "invalid_setting" {
            let name = try origin(of: setting)
            guard name != setting.variable else { throw error }
            let message = error.message.hasPrefix(setting.variable)
                ? name + error.message.dropFirst(setting.variable.count) : "\(name): \(error.message)"
            throw GatewayError(error.kind, code: error.code, message)
        }
    }

    /// Where the value of `setting` comes from: a flag, a variable, a key in the file, or its default.
    private func origin(of setting: Setting) throws -> String {
        let type: ConfigType
        switch setting.form {
        case .number: type = .int
        case .text: type = .string
        case .list: type = .stringArray
        case .numbers: type = .intArray
        }
        return try lookup(setting, type)?.from ?? "the default of \(setting.variable)"
    }
}
