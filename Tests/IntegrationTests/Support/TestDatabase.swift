import Foundation
import GatewayCore
import Logging
import PostgresNIO
import PostgresStorage
import Synchronization
import Testing

/// A fresh, empty database per test in the server named by `O365GW_TEST_DATABASE_URL` (scripts/test.sh starts a
/// private cluster and sets it).
enum TestDatabase {
    static var serverURL: DatabaseURL {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["O365GW_TEST_DATABASE_URL"] else {
                throw GatewayError(
                    .unavailable, code: "no_test_database",
                    "O365GW_TEST_DATABASE_URL is not set; run the tests with scripts/test.sh, which starts PostgreSQL.")
            }
            return try DatabaseURL(Secret(url))
        }
    }

    /// Creates a new database and returns its URL.
    static func create(_ label: String = "t") async throws -> DatabaseURL {
        var url = try serverURL
        let name = "o365gw_\(label)_\(UUID().uuidString.prefix(8).lowercased())"
        try await withClient(url) { database in
            try await database.query("CREATE DATABASE \(unescaped: name)")
        }
        url.database = name
        return url
    }

    /// The URL of a database made by ``create(_:)``, as text (for a gateway process's environment).
    static func urlString(_ url: DatabaseURL) throws -> String {
        guard let server = ProcessInfo.processInfo.environment["O365GW_TEST_DATABASE_URL"],
            var components = URLComponents(string: server)
        else { throw GatewayError(.unavailable, code: "no_test_database", "O365GW_TEST_DATABASE_URL is not set.") }
        components.path = "/" + url.database
        return components.string!
    }

    /// Runs `body` with a client connected to `url`, bounded by a timeout (a wrong address retries forever).
    static func withClient<R: Sendable>(
        _ url: DatabaseURL, _ body: @escaping @Sendable (Database) async throws -> R
    ) async throws -> R {
        let client = PostgresClient(configuration: url.clientConfiguration)
        let database = Database(client: client, timeout: url.timeout, logger: quietLogger)
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask { await client.run(); return nil }
            group.addTask { try await body(database) }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                throw GatewayError(.unavailable, code: "timeout", "database test step took over 60 s")
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }
}

/// Collects every log line (message and metadata) at trace level, to search it for secrets.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    func logger(_ label: String = "o365-gateway") -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append("\(event.level) \(event.message) \(all) \(event.source) \(event.file):\(event.line)")
        }
    }
}
