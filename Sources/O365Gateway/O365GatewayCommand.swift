import ArgumentParser
import Foundation
import GatewayApp
import GatewayCore
import Logging
import Metrics
import Prometheus

@main
struct O365GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "o365-gateway",
        abstract: "Collects Office 365 audit logs for many customer tenants and forwards them to UTMStack.",
        discussion: """
            Every setting is a flag, an environment variable (O365GW_...) or a key of a YAML or JSON file
            (--config-file); `o365-gateway COMMAND --help` lists those of each command, docs/configuration.md all.
            Prefer the environment or the file for secrets: command lines are visible to other users of the machine.
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

/// The settings of a command (``Settings``): the flags ArgumentParser leaves over, then the environment, then the
/// configuration file. `--help` lists them from their one declaration (``Setting/all``).
struct SettingsArguments: ParsableArguments {
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var flags: [String] = []

    /// The command's settings and a logger at their log level; settings that are unknown get a warning.
    func load(_ command: SettingsCommand) async throws -> (Settings, Logger) {
        let settings = try await Settings.load(command, arguments: flags)
        let logger = makeLogger(level: try settings.logLevel())
        for warning in settings.warnings { logger.warning("\(warning)") }
        return (settings, logger)
    }
}

func makeLogger(level: Logger.Level) -> Logger {
    LoggingBootstrap.once(level: level)
    var logger = Logger(label: "o365-gateway")
    logger.logLevel = level
    return logger
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
        throw ExitCode(["unknown_option", "missing_value"].contains(error.code) ? 64 : 2)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: admin API, collection scheduler and collectors, UTMStack forwarder, expiry alerts.",
        discussion: Setting.help(for: .serve))

    @OptionGroup var settings: SettingsArguments

    func run() async throws {
        try await runReportingErrors {
            let (settings, logger) = try await settings.load(.serve)
            let configuration = try settings.gatewayConfiguration()
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
        abstract: "Apply the forward-only SQL migrations and exit. Safe to run again; refuses edited migrations.",
        discussion: Setting.help(for: .migrate))

    @OptionGroup var settings: SettingsArguments

    func run() async throws {
        try await runReportingErrors {
            let (settings, logger) = try await settings.load(.migrate)
            let applied = try await Gateway.migrate(try settings.database(), logger: logger)
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

            """ + Setting.help(for: .reseal))

    @OptionGroup var settings: SettingsArguments

    func run() async throws {
        try await runReportingErrors {
            let (settings, logger) = try await settings.load(.reseal)
            let keyRing = try settings.keyRing()
            let report = try await Gateway.reseal(try settings.database(), keyRing: keyRing, logger: logger)
            let keys = report.byKey.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            print("re-sealed \(report.resealed) credential(s) and connection key(s) under key \(keyRing.activeKeyID); sealed values per key: \(keys.isEmpty ? "none" : keys)")
        }
    }
}
