import Foundation
import GatewayCore
import Logging
import NIOSSL
import PostgresNIO

/// `O365GW_DATABASE_URL`: `postgres://user:pass@host:port/db?sslmode=...&sslrootcert=/path/ca.pem`.
/// The URL may hold a password, so it arrives as a ``Secret`` and no error repeats it.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: Secret?
    public var database: String
    /// How the connection is protected (`sslmode`, as libpq names it).
    public var tls: TLSMode
    /// The PEM file of the CA(s) PostgreSQL's certificate must chain to (`sslrootcert`, or
    /// `O365GW_DATABASE_CA_FILE`); nil for the system's trust store. Read when the URL is parsed.
    public private(set) var caFile: String?
    private var trustRoots: [NIOSSLCertificate]?
    /// How long one statement or transaction may take (`O365GW_DATABASE_TIMEOUT_SECONDS`): the server's
    /// `statement_timeout` and `idle_in_transaction_session_timeout`, and the client's own deadline (``Database``).
    public var timeout: Duration = .seconds(15)

    /// How long a statement may wait for a lock before it fails (and is retried by its caller).
    public static let lockTimeout: Duration = .seconds(5)

    /// `sslmode`: what is checked of PostgreSQL's certificate. Managed PostgreSQL services document `verify-full`
    /// with their CA; `require` alone lets anyone on the network path pose as the database.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// Encrypted, but the certificate is not checked (a warning is logged when the client is made).
        case require
        /// The certificate must chain to the CA; any host name.
        case verifyCA = "verify-ca"
        /// The certificate must chain to the CA and name the host of the URL.
        case verifyFull = "verify-full"

        var verifies: Bool { self == .verifyCA || self == .verifyFull }
    }

    /// - Parameter caFile: `O365GW_DATABASE_CA_FILE`; the URL's `sslrootcert` says the same, one of them is enough.
    public init(_ url: Secret, caFile: String? = nil) throws {
        func invalid(_ why: String) -> GatewayError {
            GatewayError(
                .invalidInput, code: "invalid_database_url",
                "O365GW_DATABASE_URL \(why); write postgres://user:password@host:5432/database?sslmode=verify-full")
        }
        guard let components = URLComponents(string: url.unredacted) else { throw invalid("is not a URL") }
        guard components.scheme == "postgres" || components.scheme == "postgresql" else {
            throw invalid("must start with postgres://")
        }
        guard let host = components.host, !host.isEmpty else { throw invalid("has no host") }
        guard let user = components.user, !user.isEmpty else { throw invalid("has no user name") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw invalid("has no database name after the host") }
        var tls = TLSMode.disable
        var rootCertificate: String?
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", let value?) where TLSMode(rawValue: value) != nil: tls = TLSMode(rawValue: value)!
            case ("sslmode", _): throw invalid("has an sslmode other than disable, require, verify-ca or verify-full")
            case ("sslrootcert", let path?) where !path.isEmpty: rootCertificate = path
            case ("sslrootcert", _): throw invalid("has an empty sslrootcert; give the path of the CA's PEM file")
            default: throw invalid("has the unknown parameter \(item.name)")
            }
        }
        let given = [rootCertificate, caFile.flatMap { $0.isEmpty ? nil : $0 }].compactMap { $0 }
        guard Set(given).count <= 1 else {
            throw invalid("names one CA file in sslrootcert and O365GW_DATABASE_CA_FILE another; give it once")
        }
        if let path = given.first {
            guard tls.verifies else {
                throw invalid("has a CA file (sslrootcert or O365GW_DATABASE_CA_FILE) but does not check the certificate with it; use sslmode=verify-full")
            }
            let certificates = try? NIOSSLCertificate.fromPEMFile(path)
            guard let certificates, !certificates.isEmpty else {
                throw GatewayError(
                    .invalidInput, code: "invalid_database_ca_file",
                    "The database CA file \(path) (sslrootcert or O365GW_DATABASE_CA_FILE) is not a readable PEM certificate file.")
            }
            self.caFile = path
            self.trustRoots = certificates
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = user.removingPercentEncoding ?? user
        self.password = components.password.map { Secret($0.removingPercentEncoding ?? $0) }
        self.database = database.removingPercentEncoding ?? database
        self.tls = tls
    }

    /// The TLS settings of `tls`; nil for plain TCP.
    var tlsConfiguration: TLSConfiguration? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let trustRoots { configuration.trustRoots = .certificates(trustRoots) }
        switch tls {
        case .disable: return nil
        case .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        return configuration
    }

    /// The client's settings: a 10 s connect timeout, and per session (startup parameters, so every connection has
    /// them from its first statement) the statement, lock and idle-in-transaction timeouts and TCP keepalive probes
    /// from the server (a gateway host that vanished is noticed within about a minute and its locks released).
    public var clientConfiguration: PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password?.unredacted, database: database,
            tls: tlsConfiguration.map { .require($0) } ?? .disable)
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
        "postgres://\(username)\(password == nil ? "" : ":<redacted>")@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)"
    }
}

extension DatabaseURL {
    /// The pool of this URL, for a command or `serve` (one per process): with `sslmode=require` it warns, here and
    /// once, that PostgreSQL's certificate is not checked.
    public func makeClient(logger: Logger) -> PostgresClient {
        if tls == .require {
            logger.warning(
                "sslmode=require encrypts the connection to PostgreSQL but does not check its certificate: anyone on the network path can pose as the database. Use sslmode=verify-full with its CA (sslrootcert or O365GW_DATABASE_CA_FILE)",
                metadata: ["database": "\(self)"])
        }
        return PostgresClient(configuration: clientConfiguration, backgroundLogger: logger.forPostgresDriver)
    }

    /// Connects once, outside any pool, and fails with a clear error when TLS fails: PostgreSQL's certificate is
    /// not signed by the CA, does not name the host, or the server does not speak TLS. The pool would only retry
    /// such a connection until an operation's deadline ("did not answer"). Any other outcome (connected, refused,
    /// no answer) returns: the pool retries those as it always does. Nothing with plain TCP.
    public func checkTLS(logger: Logger) async throws {
        guard let tlsConfiguration else { return }
        let context = try NIOSSLContext(configuration: tlsConfiguration)
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password?.unredacted, database: database,
            tls: .require(context))
        configuration.options.connectTimeout = .seconds(10)
        do {
            let connection = try await withTimeout(.seconds(15)) { [configuration] in
                try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            }
            try? await connection.close()
        } catch {
            guard let problem = tlsProblem(error) else { return }
            throw GatewayError(
                .unavailable, code: "database_tls_failed",
                "PostgreSQL at \(host):\(port) failed the TLS check of sslmode=\(tls.rawValue): \(problem)")
        }
    }

    /// What went wrong with TLS, in words (never the URL); nil when `error` is no TLS failure.
    func tlsProblem(_ error: any Error) -> String? {
        let psql = error as? PSQLError
        if psql?.code == .sslUnsupported {
            return "the server does not offer TLS (ssl = off in postgresql.conf); use sslmode=disable only on a trusted network"
        }
        let underlying = psql?.underlying ?? error
        let ca = caFile.map { "the CA in \($0)" } ?? "a CA of the system trust store (give the server's CA with sslrootcert or O365GW_DATABASE_CA_FILE)"
        if let extra = underlying as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "its certificate is signed by \(ca) but is not issued for \(host); connect by a name the certificate holds, or use sslmode=verify-ca"
        }
        if let ssl = underlying as? NIOSSLError, case .handshakeFailed(let reason) = ssl {
            if "\(reason)".contains("CERTIFICATE_VERIFY_FAILED") {
                return "its certificate is not signed by \(ca)"
            }
            return "the TLS handshake failed (\(reason))"
        }
        return nil
    }
}
