import CredentialCrypto
import Foundation
import NIOSSL
import Synchronization
import GatewayCore
import ActivityAPI
import AdminAPI
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
    /// How often the admin API's certificate and key files are read again for a renewal.
    public var tlsCheckInterval: Duration = .seconds(5)
    /// How often each replica tries for the expiry lease, and its holder checks expiries and delivers alerts.
    public var expiryRound: Duration = .seconds(60)
    /// Polling, backfill, relisting, workers and leases (docs/collection.md).
    public var collection = CollectionSettings()
    /// How long the admin listener waits for slow clients, and how many it serves at once (docs/security.md).
    public var adminListener = AdminListenerLimits()
    /// Whether /metrics carries series per tenant (`O365GW_METRICS_PER_TENANT`): off, the scrape names no tenant.
    public var metricsPerTenant = false
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
    public var isLoopback: Bool { Loopback.contains(host: host) }
}

/// The admin API's TLS: a PEM certificate chain and its private key, read (and checked) at startup and read again
/// while serving (``AdminTLSReloader``): cert-manager and its kind renew the files in place, and a new connection
/// gets the new certificate without a restart. A pair that does not load (a half-written renewal, a key of another
/// certificate) is not used; the previous one goes on serving.
public final class AdminTLS: Sendable {
    public let certificateFile: String
    public let keyFile: String
    private let current: Mutex<Identity>
    /// The files' bytes last refused, so that one bad renewal is reported once.
    private let refused = Mutex<Data?>(nil)

    /// One loaded pair, and the bytes of the files it came from (a change of either is a renewal).
    struct Identity: Sendable {
        let certificates: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let files: Data
    }

    private init(certificateFile: String, keyFile: String, identity: Identity) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.current = Mutex(identity)
    }

    /// Both files or neither; a file that cannot be read or parsed, or a key that is not the certificate's, is a
    /// startup error naming its variable.
    public static func from(certificateFile: String?, keyFile: String?) throws -> AdminTLS? {
        switch (certificateFile.flatMap { $0.isEmpty ? nil : $0 }, keyFile.flatMap { $0.isEmpty ? nil : $0 }) {
        case (nil, nil):
            return nil
        case (.some(let certificateFile), .some(let keyFile)):
            return AdminTLS(
                certificateFile: certificateFile, keyFile: keyFile,
                identity: try load(certificateFile: certificateFile, keyFile: keyFile))
        default:
            throw GatewayError(
                .invalidInput, code: "missing_setting", "Set both O365GW_TLS_CERT_FILE and O365GW_TLS_KEY_FILE, or neither.")
        }
    }

    static func load(certificateFile: String, keyFile: String) throws -> Identity {
        guard let certificateBytes = FileManager.default.contents(atPath: certificateFile) else {
            throw GatewayError(
                .invalidInput, code: "invalid_tls_certificate", "O365GW_TLS_CERT_FILE \(certificateFile) cannot be read.")
        }
        guard let keyBytes = FileManager.default.contents(atPath: keyFile) else {
            throw GatewayError(.invalidInput, code: "invalid_tls_key", "O365GW_TLS_KEY_FILE \(keyFile) cannot be read.")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(Array(certificateBytes))
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
            key = try NIOSSLPrivateKey(bytes: Array(keyBytes), format: .pem)
        } catch {
            throw GatewayError(
                .invalidInput, code: "invalid_tls_key", "O365GW_TLS_KEY_FILE \(keyFile) is not a readable, unencrypted PEM private key.")
        }
        do {
            // BoringSSL refuses a key that is not the certificate's.
            _ = try NIOSSLContext(configuration: configuration(certificates: certificates, key: key))
        } catch {
            throw GatewayError(
                .invalidInput, code: "invalid_tls_key",
                "O365GW_TLS_KEY_FILE \(keyFile) is not the private key of the certificate in O365GW_TLS_CERT_FILE \(certificateFile).")
        }
        return Identity(certificates: certificates, key: key, files: certificateBytes + keyBytes)
    }

    private static func configuration(certificates: [NIOSSLCertificate], key: NIOSSLPrivateKey) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    /// The listener's TLS: every handshake takes the pair loaded last.
    var serverConfiguration: TLSConfiguration {
        let identity = current.withLock { $0 }
        var configuration = Self.configuration(certificates: identity.certificates, key: identity.key)
        configuration.sslContextCallback = { [self] _, promise in
            let identity = current.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = identity.certificates.map { .certificate($0) }
            override.privateKey = .privateKey(identity.key)
            promise.succeed(override)
        }
        return configuration
    }

    /// What reading the files again found.
    enum Reload: Equatable {
        case unchanged
        case renewed
        /// The files changed but do not load; the previous pair goes on serving.
        case refused(String)
    }

    /// Reads both files; uses them from the next connection on when they changed and load.
    func reload() -> Reload {
        let certificateBytes = FileManager.default.contents(atPath: certificateFile) ?? Data()
        let keyBytes = FileManager.default.contents(atPath: keyFile) ?? Data()
        let files = certificateBytes + keyBytes
        guard current.withLock({ $0.files }) != files, refused.withLock({ $0 }) != files else { return .unchanged }
        do {
            let identity = try Self.load(certificateFile: certificateFile, keyFile: keyFile)
            current.withLock { $0 = identity }
            return .renewed
        } catch {
            // Said once per content of the files: a half-written renewal is tried again when they change.
            refused.withLock { $0 = files }
            return .refused((error as? GatewayError)?.message ?? "\(type(of: error))")
        }
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
