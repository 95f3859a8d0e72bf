import Foundation
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

    static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)) throws -> Result {
        let process = process(arguments, environment: environment)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite(.timeLimit(.minutes(2))) struct CommandLineTests {
    @Test func helpNeverShowsSecretsFromTheEnvironment() throws {
        let env = [
            "O365GW_ADMIN_TOKEN": "help-probe-admin-token-123456",
            "O365GW_ENCRYPTION_KEYS": "k1:\(Data(repeating: 3, count: 32).base64EncodedString())",
            "O365GW_DATABASE_URL": "postgres://u:help-probe-password@127.0.0.1:1/db",
        ]
        for command in [["--help"], ["serve", "--help"], ["migrate", "--help"], ["reseal", "--help"], ["demo", "--help"]] {
            let result = try Executable.run(command, environment: env)
            #expect(result.status == 0, "\(command)")
            let text = result.stdout + result.stderr
            #expect(text.contains("USAGE"), "\(command)")
            for secret in env.values { #expect(!text.contains(secret), "\(command) shows a secret") }
        }
    }

    @Test func missingSettingsAreNamed() throws {
        let result = try Executable.run(["migrate"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("O365GW_DATABASE_URL is required"))
    }

    @Test func serveRefusesAnOutdatedSchemaAndMigrateFixesIt() async throws {
        let db = try await TestDatabase.create("cli")
        let env = [
            "O365GW_DATABASE_URL": db.urlForTools + "?sslmode=disable",
            "O365GW_ENCRYPTION_KEYS": "k1:\(Data(repeating: 5, count: 32).base64EncodedString())",
            "O365GW_ADMIN_TOKEN": "cli-probe-admin-token-0123456789",
            "O365GW_LISTEN": "127.0.0.1:0",
        ]
        let refused = try Executable.run(["serve"], environment: env)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("run `o365-gateway migrate`"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("cli-probe-admin-token"))
        let migrated = try Executable.run(["migrate"], environment: env)
        #expect(migrated.status == 0 && migrated.stdout.contains("applied \(Migration.embedded.count) migration(s)"), "\(migrated.stderr)")
        let again = try Executable.run(["migrate"], environment: env)
        #expect(again.status == 0 && again.stdout.contains("schema is current"))
    }
}
