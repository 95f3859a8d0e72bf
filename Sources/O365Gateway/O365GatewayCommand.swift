import ActivityAPI
import ArgumentParser
import Collection
import CredentialCrypto
import Foundation
import GatewayApp
import GatewayCore
import Logging
import Metrics
import PostgresStorage
import Prometheus
import UTMStackForwarder

@main
struct O365GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "o365-gateway",
        abstract: "Collects Office 365 audit logs for many customer tenants and forwards them to UTMStack.",
        discussion: """
            Every option can also be given by its environment variable (O365GW_...); the flag wins.
            Prefer the environment for secrets: command lines are visible to other users of the machine.
            """,
        subcommands: [Serve.self, Migrate.self, Reseal.self, Tenants.self, Report.self, Demo.self, Simulator.self, Receiver.self, Bench.self]
    )

    /// ArgumentParser's entry point, after tuning the heap (``HeapTuning``) for whatever subcommand runs.
    static func main() async {
        HeapTuning.apply()
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options shared by the subcommands, each with its environment variable.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (env O365GW_DATABASE_URL).")
    var databaseURL: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (env O365GW_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(name: .customLong("database-timeout-seconds"), help: "How long one database statement or transaction may take (env O365GW_DATABASE_TIMEOUT_SECONDS; default 15).")
    var databaseTimeout: Int?

    func database() throws -> DatabaseURL {
        var url = try DatabaseURL(try required(databaseURL, env: "O365GW_DATABASE_URL", flag: "--database-url"))
        url.timeout = .seconds(try setting(databaseTimeout, "O365GW_DATABASE_TIMEOUT_SECONDS", 1...3600, 15))
        return url
    }

    func makeLogger() throws -> Logger {
        let text = logLevel ?? ProcessInfo.processInfo.environment["O365GW_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text) else {
            throw ValidationError("O365GW_LOG_LEVEL must be one of trace, debug, info, notice, warning, error.")
        }
        LoggingBootstrap.once(level: level)
        var logger = Logger(label: "o365-gateway")
        logger.logLevel = level
        return logger
    }
}

struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("encryption-keys"), help: "keyId:base64(32 bytes),... the first seals (env O365GW_ENCRYPTION_KEYS).")
    var encryptionKeys: String?

    func keyRing() throws -> KeyRing {
        try KeyRing(parsing: try required(encryptionKeys, env: "O365GW_ENCRYPTION_KEYS", flag: "--encryption-keys"))
    }
}

/// A whole-number setting: the flag, else the environment variable, else the default; out of range or not a number
/// is an error naming the variable.
func setting(_ flag: Int?, _ name: String, _ range: ClosedRange<Int>, _ fallback: Int) throws -> Int {
    let text = ProcessInfo.processInfo.environment[name]
    guard let value = flag ?? (text.map { Int($0) } ?? fallback), range.contains(value) else {
        throw GatewayError(
            .invalidInput, code: "invalid_setting", "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound).")
    }
    return value
}

func required(_ flag: String?, env: String, flag flagName: String) throws -> Secret {
    if let flag, !flag.isEmpty { return Secret(flag) }
    if let value = ProcessInfo.processInfo.environment[env], !value.isEmpty { return Secret(value) }
    throw GatewayError(.invalidInput, code: "missing_setting", "\(env) is required; set it or pass \(flagName).")
}

enum LoggingBootstrap {
    nonisolated(unsafe) private static var done = false
    static func once(level: Logger.Level) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Prints a ``GatewayError`` as one clear line and exits non-zero; anything else goes to ArgumentParser.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as GatewayError {
        FileHandle.standardError.write(Data("error: \(error.code): \(error.message)\n".utf8))
        throw ExitCode(2)
    }
}

/// Where logs go in UTMStack.
struct UTMStackOptions: ParsableArguments {
    @Option(name: .customLong("utmstack-socket"), help: "Unix socket of the UTMStack engine (env O365GW_UTMSTACK_SOCKET; default /workdir/sockets/engine_server.sock).")
    var socket: String?

    @Option(name: .customLong("utmstack-address"), help: "host:port of UTMStack's network service; when set, logs go over TLS instead of the socket (env O365GW_UTMSTACK_ADDRESS).")
    var address: String?

    @Option(name: .customLong("utmstack-ca-file"), help: "PEM CA that signed UTMStack's certificate; default: the system trust store (env O365GW_UTMSTACK_CA_FILE).")
    var caFile: String?

    @Option(name: .customLong("utmstack-server-name"), help: "Name to verify UTMStack's certificate against, when it differs from the host (env O365GW_UTMSTACK_SERVER_NAME).")
    var serverName: String?

    @Option(name: .customLong("utmstack-connection-key"), help: "UTMStack federation connection key for the network path (env O365GW_UTMSTACK_CONNECTION_KEY).")
    var connectionKey: String?

    @Option(name: .customLong("utmstack-inflight-bytes"), help: "Bytes of logs held awaiting acknowledgement before collectors wait (env O365GW_UTMSTACK_INFLIGHT_BYTES; default 16777216).")
    var inFlightBytes: Int?

    @Option(name: .customLong("utmstack-ack-timeout-seconds"), help: "Give a connection up when logs in flight get no acknowledgement for this long; they are resent (env O365GW_UTMSTACK_ACK_TIMEOUT_SECONDS; default 30).")
    var ackTimeout: Int?

    @Option(name: .customLong("utmstack-keepalive-seconds"), help: "PING UTMStack when logs in flight get no acknowledgement for this long; unanswered within as long, the connection is given up (env O365GW_UTMSTACK_KEEPALIVE_SECONDS; default 10).")
    var keepalive: Int?

    @Option(name: .customLong("utmstack-max-message-bytes"), help: "The largest log the engine takes; larger ones are set aside at once (env O365GW_UTMSTACK_MAX_MESSAGE_BYTES; default 4194304, grpc-go's limit).")
    var maxMessageBytes: Int?

    func configuration() throws -> ForwarderConfiguration {
        let env = ProcessInfo.processInfo.environment
        let key = connectionKey ?? env["O365GW_UTMSTACK_CONNECTION_KEY"]
        var configuration = try ForwarderConfiguration.from(
            socket: socket ?? env["O365GW_UTMSTACK_SOCKET"],
            address: address ?? env["O365GW_UTMSTACK_ADDRESS"],
            caFile: caFile ?? env["O365GW_UTMSTACK_CA_FILE"],
            serverName: serverName ?? env["O365GW_UTMSTACK_SERVER_NAME"],
            connectionKey: key.map(Secret.init),
            inFlightBytes: try setting(inFlightBytes, "O365GW_UTMSTACK_INFLIGHT_BYTES", 65_536...(1 << 34), ForwarderConfiguration().inFlightByteBudget))
        configuration.ackTimeout = .seconds(try setting(ackTimeout, "O365GW_UTMSTACK_ACK_TIMEOUT_SECONDS", 5...3600, 30))
        let keepaliveSeconds = try setting(keepalive, "O365GW_UTMSTACK_KEEPALIVE_SECONDS", 1...3600, 10)
        configuration.keepaliveInterval = .seconds(keepaliveSeconds)
        configuration.keepaliveTimeout = .seconds(keepaliveSeconds)
        configuration.maxMessageBytes = try setting(
            maxMessageBytes, "O365GW_UTMSTACK_MAX_MESSAGE_BYTES", 1024...(1 << 30), ForwarderConfiguration.grpcDefaultMaxMessageBytes)
        return configuration
    }
}

/// How to reach Microsoft.
struct MicrosoftOptions: ParsableArguments {
    @Option(name: .customLong("login-url"), help: "Override the sign-in host of every cloud, e.g. the simulator (env O365GW_LOGIN_URL).")
    var loginURL: String?

    @Option(name: .customLong("manage-url"), help: "Override the Activity API host of every cloud (env O365GW_MANAGE_URL).")
    var manageURL: String?

    @Option(name: .customLong("graph-url"), help: "Override the Graph host of every cloud (env O365GW_GRAPH_URL).")
    var graphURL: String?

    @Option(name: .customLong("publisher-id"), help: "Default PublisherIdentifier: the MSSP's own tenant GUID (env O365GW_PUBLISHER_ID).")
    var publisherID: String?

    @Option(name: .customLong("requests-per-minute"), help: "Activity API requests per tenant per minute (env O365GW_REQUESTS_PER_MINUTE; default 600).")
    var requestsPerMinute: Int?

    func settings() throws -> MicrosoftSettings {
        let env = ProcessInfo.processInfo.environment
        let overrides = try MicrosoftEndpoints.Overrides(
            login: loginURL ?? env["O365GW_LOGIN_URL"], manage: manageURL ?? env["O365GW_MANAGE_URL"],
            graph: graphURL ?? env["O365GW_GRAPH_URL"])
        let publisher = try (publisherID ?? env["O365GW_PUBLISHER_ID"]).map { try Validation.guid($0, field: "O365GW_PUBLISHER_ID") }
        let rate = try requestsPerMinute ?? env["O365GW_REQUESTS_PER_MINUTE"].map {
            guard let value = Int($0), value > 0 else {
                throw GatewayError(.invalidInput, code: "invalid_setting", "O365GW_REQUESTS_PER_MINUTE must be a positive number.")
            }
            return value
        } ?? 600
        guard rate > 0 else {
            throw GatewayError(.invalidInput, code: "invalid_setting", "O365GW_REQUESTS_PER_MINUTE must be a positive number.")
        }
        return MicrosoftSettings(overrides: overrides, publisherID: publisher, requestsPerMinute: rate)
    }
}

/// Collection tunables.
struct CollectionOptions: ParsableArguments {
    @Option(name: .customLong("poll-interval-seconds"), help: "How often each (tenant, content type) is polled (env O365GW_POLL_INTERVAL_SECONDS; default 60).")
    var pollInterval: Int?

    @Option(name: .customLong("backfill-hours"), help: "How far back a new tenant is collected, at most 168 (env O365GW_BACKFILL_HOURS; default 24).")
    var backfillHours: Int?

    @Option(name: .customLong("relist-minutes"), help: "Trailing period listed again each poll to catch late blobs (env O365GW_RELIST_MINUTES; default 60).")
    var relistMinutes: Int?

    @Option(name: .customLong("workers"), help: "Collectors running at once in this replica (env O365GW_WORKERS; default 32).")
    var workers: Int?

    @Option(name: .customLong("blob-buffer-bytes"), help: "Bytes of fetched blobs held before they are forwarded, all collectors together (env O365GW_BLOB_BUFFER_BYTES; default 33554432).")
    var blobBufferBytes: Int?

    @Option(name: .customLong("max-blob-bytes"), help: "The largest response accepted from Microsoft (env O365GW_MAX_BLOB_BYTES; default 134217728).")
    var maxBlobBytes: Int?

    func settings() throws -> CollectionSettings {
        CollectionSettings(
            pollInterval: .seconds(try setting(pollInterval, "O365GW_POLL_INTERVAL_SECONDS", 1...86_400, 60)),
            backfill: TimeInterval(try setting(backfillHours, "O365GW_BACKFILL_HOURS", 0...168, 24) * 3600),
            trailingRelist: TimeInterval(try setting(relistMinutes, "O365GW_RELIST_MINUTES", 0...1440, 60) * 60),
            workers: try setting(workers, "O365GW_WORKERS", 1...10_000, 32),
            blobBufferBytes: try setting(blobBufferBytes, "O365GW_BLOB_BUFFER_BYTES", 1 << 20...(1 << 34), 32 << 20),
            maxBlobBytes: try setting(maxBlobBytes, "O365GW_MAX_BLOB_BYTES", 1 << 20...(1 << 32), AsyncHTTPExchange.defaultMaxBodyBytes))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: admin API, collection scheduler and collectors, UTMStack forwarder, expiry alerts.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var secrets: SecretOptions
    @OptionGroup var utmstack: UTMStackOptions
    @OptionGroup var microsoft: MicrosoftOptions
    @OptionGroup var collection: CollectionOptions

    @Option(name: .customLong("admin-token"), help: "Bearer token of the admin API (env O365GW_ADMIN_TOKEN).")
    var adminToken: String?

    @Option(name: .customLong("listen"), help: "Admin API address host:port (env O365GW_LISTEN; default 127.0.0.1:8080).")
    var listen: String?

    @Option(name: .customLong("tls-cert-file"), help: "PEM certificate (chain) of the admin API; with --tls-key-file it serves HTTPS (env O365GW_TLS_CERT_FILE).")
    var tlsCertFile: String?

    @Option(name: .customLong("tls-key-file"), help: "PEM private key of the admin API's certificate (env O365GW_TLS_KEY_FILE).")
    var tlsKeyFile: String?

    @Option(name: .customLong("secret-alert-days"), help: "Alert expiring secrets this many days before they expire, comma-separated; daily once expired (env O365GW_SECRET_ALERT_DAYS; default 30,14,7,1).")
    var secretAlertDays: String?

    @Option(name: .customLong("alert-webhook-url"), help: "Also post expiry alerts as JSON to this URL; a Slack or Teams incoming webhook works as it is (env O365GW_ALERT_WEBHOOK_URL).")
    var alertWebhookURL: String?

    func run() async throws {
        try await runReportingErrors {
            let logger = try common.makeLogger()
            var configuration = try GatewayConfiguration(
                database: try common.database(),
                keyRing: try secrets.keyRing(),
                adminToken: try required(adminToken, env: "O365GW_ADMIN_TOKEN", flag: "--admin-token"),
                listen: try ListenAddress(
                    parsing: listen ?? ProcessInfo.processInfo.environment["O365GW_LISTEN"] ?? "127.0.0.1:8080"),
                forwarder: try utmstack.configuration(),
                microsoft: try microsoft.settings())
            let env = ProcessInfo.processInfo.environment
            if let days = secretAlertDays ?? env["O365GW_SECRET_ALERT_DAYS"] {
                configuration.alertPolicy = try ExpiryAlertPolicy(parsing: days)
            }
            if let url = alertWebhookURL ?? env["O365GW_ALERT_WEBHOOK_URL"], !url.isEmpty {
                configuration.alertWebhook = try AlertWebhook(url: Secret(url))
            }
            configuration.adminTLS = try AdminTLS.from(
                certificateFile: tlsCertFile ?? env["O365GW_TLS_CERT_FILE"], keyFile: tlsKeyFile ?? env["O365GW_TLS_KEY_FILE"])
            configuration.collection = try collection.settings()
            let metrics = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
            logger.info(
                "starting",
                metadata: ["listen": "\(configuration.listen)", "database": "\(configuration.database)",
                           "activeKeyId": "\(configuration.keyRing.activeKeyID)"])
            try await Gateway.serve(configuration, metrics: metrics, logger: logger)
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the forward-only SQL migrations and exit. Safe to run again; refuses edited migrations.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await runReportingErrors {
            let logger = try common.makeLogger()
            let applied = try await Gateway.migrate(try common.database(), logger: logger)
            print(applied.isEmpty
                ? "schema is current"
                : "applied \(applied.count) migration(s): " + applied.map { "\($0.version)_\($0.name)" }.joined(separator: ", "))
        }
    }
}

struct Reseal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-encrypt every stored credential under the active (first) key; safe while gateways run.",
        discussion: """
            Key rotation: put the new key first in O365GW_ENCRYPTION_KEYS and keep the old ones after it, restart or
            roll the gateways, run this command, then remove the old keys once it reports none in use.
            """)

    @OptionGroup var common: CommonOptions
    @OptionGroup var secrets: SecretOptions

    func run() async throws {
        try await runReportingErrors {
            let logger = try common.makeLogger()
            let keyRing = try secrets.keyRing()
            let report = try await Gateway.reseal(try common.database(), keyRing: keyRing, logger: logger)
            let keys = report.byKey.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            print("re-sealed \(report.resealed) credential(s) under key \(keyRing.activeKeyID); credentials per key: \(keys.isEmpty ? "none" : keys)")
        }
    }
}
