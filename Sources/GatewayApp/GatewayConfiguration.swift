import CredentialCrypto
import GatewayCore
import PostgresStorage

/// Everything `serve` needs, typed and validated. Built from flags and environment by the executable;
/// see docs/configuration.md for each key.
public struct GatewayConfiguration: Sendable {
    public var database: DatabaseURL
    public var keyRing: KeyRing
    public var adminToken: Secret
    public var listen: ListenAddress
    public var maxRequestBodyBytes: Int

    public init(
        database: DatabaseURL, keyRing: KeyRing, adminToken: Secret, listen: ListenAddress,
        maxRequestBodyBytes: Int = 64 * 1024
    ) throws {
        guard adminToken.unredacted.count >= 16 else {
            throw GatewayError(
                .invalidInput, code: "weak_admin_token",
                "O365GW_ADMIN_TOKEN must be at least 16 characters; make one with openssl rand -hex 32.")
        }
        self.database = database
        self.keyRing = keyRing
        self.adminToken = adminToken
        self.listen = listen
        self.maxRequestBodyBytes = maxRequestBodyBytes
    }
}

/// `host:port` of the admin API (`O365GW_LISTEN`).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw GatewayError(
                .invalidInput, code: "invalid_listen_address",
                "O365GW_LISTEN must be host:port, such as 127.0.0.1:8080 or 0.0.0.0:8080.")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
