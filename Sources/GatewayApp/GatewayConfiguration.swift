import CredentialCrypto
import Foundation
import NIOSSL
import GatewayCore
import ActivityAPI
import Collection
import PostgresStorage
import UTMStackForwarder

/// Everything `serve` needs, typed and validated. Built from flags and environment by the executable;
/// see docs/configuration.md for each key.
public struct GatewayConfiguration: Sendable {
    public var database: DatabaseURL
    public var keyRing: KeyRing
    public var adminToken: Secret
    public var listen: ListenAddress
    public var maxRequestBodyBytes: Int
    public var forwarder: ForwarderConfiguration
    public var microsoft: MicrosoftSettings
    /// When expiring credentials are alerted (`O365GW_SECRET_ALERT_DAYS`, days before expiry; daily once expired).
    public var alertPolicy = try! ExpiryAlertPolicy()
    /// Where alerts go besides UTMStack (`O365GW_ALERT_WEBHOOK_URL`); nil for UTMStack only.
    public var alertWebhook: AlertWebhook?
    /// The admin API's certificate and key (`O365GW_TLS_CERT_FILE`, `O365GW_TLS_KEY_FILE`); nil for plain HTTP.
    public var adminTLS: AdminTLS?
    /// How often each replica tries for the expiry lease, and its holder checks expiries and delivers alerts.
    public var expiryRound: Duration = .seconds(60)
    /// Polling, backfill, relisting, workers and leases (docs/collection.md).
    public var collection = CollectionSettings()
    /// Where stored destinations may point (`O365GW_DESTINATION_SOCKET_DIRECTORIES`,
    /// `O365GW_DESTINATION_ALLOWED_HOSTS`); nil: sockets in the directory of the configured engine socket, any host.
    public var destinationPolicy: DestinationPolicy?

    /// The destination policy in force.
    var effectiveDestinationPolicy: DestinationPolicy {
        if let destinationPolicy { return destinationPolicy }
        if case .engineSocket(let path) = forwarder.endpoint { return .defaultFor(socket: path) }
        return .defaultFor(socket: ForwarderConfiguration.defaultSocketPath)
    }

    public init(
        database: DatabaseURL, keyRing: KeyRing, adminToken: Secret, listen: ListenAddress,
        maxRequestBodyBytes: Int = 64 * 1024, forwarder: ForwarderConfiguration = .init(),
        microsoft: MicrosoftSettings = .init()
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
        self.forwarder = forwarder
        self.microsoft = microsoft
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

    /// Whether only this machine can connect (127.0.0.0/8, ::1, localhost).
    public var isLoopback: Bool { host == "localhost" || host == "::1" || host.hasPrefix("127.") }
}

/// The admin API's TLS: a PEM certificate chain and its private key, read (and checked) at startup.
public struct AdminTLS: Sendable {
    public let certificates: [NIOSSLCertificate]
    public let key: NIOSSLPrivateKey

    /// Both files or neither; a file that cannot be read or parsed is a startup error naming its variable.
    public static func from(certificateFile: String?, keyFile: String?) throws -> AdminTLS? {
        switch (certificateFile.flatMap { $0.isEmpty ? nil : $0 }, keyFile.flatMap { $0.isEmpty ? nil : $0 }) {
        case (nil, nil):
            return nil
        case (.some(let certificateFile), .some(let keyFile)):
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(certificateFile)
            } catch {
                throw GatewayError(
                    .invalidInput, code: "invalid_tls_certificate",
                    "O365GW_TLS_CERT_FILE \(certificateFile) is not a readable PEM certificate (chain).")
            }
            guard !certificates.isEmpty else {
                throw GatewayError(.invalidInput, code: "invalid_tls_certificate", "O365GW_TLS_CERT_FILE \(certificateFile) holds no certificate.")
            }
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            } catch {
                throw GatewayError(
                    .invalidInput, code: "invalid_tls_key", "O365GW_TLS_KEY_FILE \(keyFile) is not a readable, unencrypted PEM private key.")
            }
            return AdminTLS(certificates: certificates, key: key)
        default:
            throw GatewayError(
                .invalidInput, code: "missing_setting", "Set both O365GW_TLS_CERT_FILE and O365GW_TLS_KEY_FILE, or neither.")
        }
    }

    var serverConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }
}

extension ForwarderConfiguration {
    /// Builds the UTMStack delivery settings: the engine socket unless a network address is given.
    /// - Parameters:
    ///   - address: `host:port` of UTMStack's network service (`O365GW_UTMSTACK_ADDRESS`); nil for the socket.
    public static func from(
        socket: String?, address: String?, caFile: String?, serverName: String?, connectionKey: Secret?,
        inFlightBytes: Int?
    ) throws -> ForwarderConfiguration {
        var configuration = ForwarderConfiguration()
        if let bytes = inFlightBytes {
            guard bytes >= 64 * 1024 else {
                throw GatewayError(
                    .invalidInput, code: "invalid_inflight_bytes", "O365GW_UTMSTACK_INFLIGHT_BYTES must be at least 65536.")
            }
            configuration.inFlightByteBudget = bytes
        }
        guard let address, !address.isEmpty else {
            configuration.endpoint = .engineSocket(path: socket ?? ForwarderConfiguration.defaultSocketPath)
            return configuration
        }
        let listen = try? ListenAddress(parsing: address)
        guard let listen, listen.host != "0.0.0.0" else {
            throw GatewayError(
                .invalidInput, code: "invalid_utmstack_address",
                "O365GW_UTMSTACK_ADDRESS must be host:port of UTMStack's network service, such as utmstack.example.com:50051.")
        }
        guard let connectionKey, !connectionKey.isEmpty else {
            throw GatewayError(
                .invalidInput, code: "missing_setting",
                "O365GW_UTMSTACK_CONNECTION_KEY is required with O365GW_UTMSTACK_ADDRESS (UTMStack's federation connection key).")
        }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw GatewayError(.invalidInput, code: "invalid_ca_file", "O365GW_UTMSTACK_CA_FILE \(caFile) is not a readable file.")
        }
        configuration.endpoint = .network(
            .init(host: listen.host, port: listen.port, ca: caFile.map { .file($0) }, serverName: serverName, connectionKey: connectionKey))
        return configuration
    }
}

/// How the gateway talks to Microsoft.
public struct MicrosoftSettings: Sendable {
    /// `O365GW_LOGIN_URL`, `O365GW_MANAGE_URL`, `O365GW_GRAPH_URL`.
    public var overrides: MicrosoftEndpoints.Overrides
    /// `O365GW_PUBLISHER_ID`: the default `PublisherIdentifier` (the MSSP's own tenant GUID).
    public var publisherID: UUID?
    /// `O365GW_REQUESTS_PER_MINUTE`: the request budget per tenant, shared by its content types.
    public var requestsPerMinute: Int
    /// Retries of a transient fault (5xx, a plain 404, a timeout) within one poll, with backoff, before the poll
    /// fails and the unit is `degraded` (retried later; nothing is skipped).
    public var maxRetries: Int

    public init(
        overrides: MicrosoftEndpoints.Overrides = .init(), publisherID: UUID? = nil, requestsPerMinute: Int = 1_800,
        maxRetries: Int = 5
    ) {
        self.overrides = overrides
        self.publisherID = publisherID
        self.requestsPerMinute = requestsPerMinute
        self.maxRetries = maxRetries
    }
}
