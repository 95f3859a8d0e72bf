import Foundation
import GatewayCore
import PostgresNIO

/// `O365GW_DATABASE_URL`: `postgres://user:pass@host:port/db?sslmode=disable|require`.
/// The URL may hold a password, so it arrives as a ``Secret`` and no error repeats it.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: Secret?
    public var database: String
    public var requireTLS: Bool
    /// How long one statement or transaction may take (`O365GW_DATABASE_TIMEOUT_SECONDS`): the server's
    /// `statement_timeout` and `idle_in_transaction_session_timeout`, and the client's own deadline (``Database``).
    public var timeout: Duration = .seconds(15)

    /// How long a statement may wait for a lock before it fails (and is retried by its caller).
    public static let lockTimeout: Duration = .seconds(5)

    public init(_ url: Secret) throws {
        func invalid(_ why: String) -> GatewayError {
            GatewayError(
                .invalidInput, code: "invalid_database_url",
                "O365GW_DATABASE_URL \(why); write postgres://user:password@host:5432/database?sslmode=disable")
        }
        guard let components = URLComponents(string: url.unredacted) else { throw invalid("is not a URL") }
        guard components.scheme == "postgres" || components.scheme == "postgresql" else {
            throw invalid("must start with postgres://")
        }
        guard let host = components.host, !host.isEmpty else { throw invalid("has no host") }
        guard let user = components.user, !user.isEmpty else { throw invalid("has no user name") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw invalid("has no database name after the host") }
        var requireTLS = false
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", "disable"): requireTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-full"): requireTLS = true
            case ("sslmode", _): throw invalid("has an sslmode other than disable, require or verify-full")
            default: throw invalid("has the unknown parameter \(item.name)")
            }
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = user.removingPercentEncoding ?? user
        self.password = components.password.map { Secret($0.removingPercentEncoding ?? $0) }
        self.database = database.removingPercentEncoding ?? database
        self.requireTLS = requireTLS
    }

    /// The client's settings: a 10 s connect timeout, and per session (startup parameters, so every connection has
    /// them from its first statement) the statement, lock and idle-in-transaction timeouts and TCP keepalive probes
    /// from the server (a gateway host that vanished is noticed within about a minute and its locks released).
    public var clientConfiguration: PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password?.unredacted, database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.connectTimeout = .seconds(10)
        // No `SELECT 1` on idle connections: the server's TCP keepalives (below) already find a dead peer, every
        // operation has a deadline that closes a connection which stopped answering, and the gateway uses its
        // connections every second. Each parked connection's keep-alive timer was a `Task.sleep` that the next
        // lease cancelled but that held its memory until its deadline (swiftlang/swift#60441).
        configuration.options.keepAliveBehavior = nil
        let milliseconds = { (duration: Duration) in "\(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)" }
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", milliseconds(timeout)),
            ("lock_timeout", milliseconds(min(Self.lockTimeout, timeout))),
            ("idle_in_transaction_session_timeout", milliseconds(timeout)),
            ("tcp_keepalives_idle", "30"), ("tcp_keepalives_interval", "10"), ("tcp_keepalives_count", "3"),
            ("application_name", "o365-gateway"),
        ]
        return configuration
    }

    public var description: String {
        "postgres://\(username)\(password == nil ? "" : ":<redacted>")@\(host):\(port)/\(database)"
    }
}
