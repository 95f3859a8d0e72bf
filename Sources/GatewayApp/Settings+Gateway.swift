import ActivityAPI
import Collection
import CredentialCrypto
import Foundation
import GatewayCore
import Logging
import PostgresStorage
import UTMStackForwarder

/// The typed configuration of each command, built from its ``Settings``.
extension Settings {
    public func logLevel() throws -> Logger.Level {
        try parsed(.logLevel) { Logger.Level(rawValue: $0) } ?? .info
    }

    public func database() throws -> DatabaseURL {
        let caFile = try text(.databaseCAFile)
        var url = try required(.databaseURL) { try DatabaseURL(Secret($0), caFile: caFile) }
        url.timeout = .seconds(try number(.databaseTimeout))
        return url
    }

    /// The admin API the tenants commands send the token and customers' secrets to (`--url`):
    /// `http(s)://host[:port][/path]`. No user name or password in it (the token authenticates, and a password there
    /// would be shown), no query. Plain `http://` only to this machine (``Loopback``) unless `insecure`: beyond it, the
    /// token and the secrets would cross the network readable.
    public func adminEndpoint(insecure: Bool) throws -> URL {
        try required(.adminURL) { text -> URL? in
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                ["http", "https"].contains(scheme), let host = components.host, !host.isEmpty,
                components.query == nil, components.fragment == nil, let url = components.url
            else { return nil }
            guard components.user == nil, components.password == nil else {
                throw GatewayError(
                    .invalidInput, code: "invalid_admin_url",
                    "\(Setting.adminURL.variable) must not hold a user name or password (user:password@); the admin token authenticates")
            }
            guard scheme == "https" || insecure || Loopback.contains(host: host) else {
                throw GatewayError(
                    .invalidInput, code: "insecure_admin_url",
                    "\(Setting.adminURL.variable) is plain http:// to \(host), beyond this machine: the admin token and customers' secrets would cross the network readable. Use https:// (--ca-file for a private CA), or --insecure on a network you trust")
            }
            return url
        }
    }

    public func keyRing() throws -> KeyRing {
        try required(.encryptionKeys) { try KeyRing(parsing: Secret($0)) }
    }

    /// Everything `serve` needs.
    public func gatewayConfiguration() throws -> GatewayConfiguration {
        var configuration = try GatewayConfiguration(
            database: try database(),
            keyRing: try keyRing(),
            adminToken: try requiredSecret(.adminToken),
            listen: try parsed(.listen) { try? ListenAddress(parsing: $0) } ?? ListenAddress(host: "127.0.0.1", port: 8080),
            forwarder: try forwarder(),
            microsoft: try microsoft())
        configuration.alertPolicy = try checked(.secretAlertDays) { try ExpiryAlertPolicy(thresholds: try numbers(.secretAlertDays)) }
        configuration.alertWebhook = try secret(.alertWebhookURL).map { try AlertWebhook(url: $0) }
        configuration.adminTLS = try AdminTLS.from(certificateFile: try text(.tlsCertFile), keyFile: try text(.tlsKeyFile))
        configuration.collection = try collection()
        configuration.metricsPerTenant = try parsed(.metricsPerTenant) { ["true": true, "false": false][$0.lowercased()] } ?? false
        configuration.destinationPolicy = try destinationPolicy()
        return configuration
    }

    /// Where stored destinations may point: sockets in the directories given (else the configured socket's), the
    /// hosts given (else any).
    public func destinationPolicy() throws -> DestinationPolicy {
        let directories = try checked(.destinationSocketDirectories) {
            try list(.destinationSocketDirectories).map { directories in
                guard directories.allSatisfy({ $0.hasPrefix("/") && !$0.split(separator: "/").contains("..") }) else {
                    throw GatewayError(
                        .invalidInput, code: "invalid_setting",
                        "\(Setting.destinationSocketDirectories.variable) must be absolute directories, such as /workdir/sockets")
                }
                return directories
            }
        }
        let hosts = try checked(.destinationAllowedHosts) {
            try list(.destinationAllowedHosts).map { patterns in
                try patterns.map { text in
                    guard let pattern = HostPattern(parsing: text) else {
                        throw GatewayError(
                            .invalidInput, code: "invalid_setting",
                            "\(Setting.destinationAllowedHosts.variable) must list host, host:port, *.domain or * entries, such as utmstack.example.net:9000 or *.utmstack.example.net")
                    }
                    return pattern
                }
            }
        }
        let socket = try text(.utmstackSocket) ?? ForwarderConfiguration.defaultSocketPath
        return DestinationPolicy(
            socketDirectories: directories ?? [DestinationPolicy.directory(of: socket)], allowedHosts: hosts)
    }

    public func forwarder() throws -> ForwarderConfiguration {
        var configuration = try ForwarderConfiguration.from(
            socket: try text(.utmstackSocket), address: try text(.utmstackAddress), caFile: try text(.utmstackCAFile),
            serverName: try text(.utmstackServerName), connectionKey: try secret(.utmstackConnectionKey),
            inFlightBytes: try number(.utmstackInFlightBytes))
        configuration.ackTimeout = .seconds(try number(.utmstackAckTimeout))
        let keepalive = try number(.utmstackKeepalive)
        configuration.keepaliveInterval = .seconds(keepalive)
        configuration.keepaliveTimeout = .seconds(keepalive)
        configuration.maxMessageBytes = try number(.utmstackMaxMessageBytes)
        return configuration
    }

    public func microsoft() throws -> MicrosoftSettings {
        func host(_ setting: Setting) throws -> URL? { try parsed(setting, MicrosoftEndpoints.Overrides.host(parsing:)) }
        return MicrosoftSettings(
            overrides: .init(login: try host(.loginURL), manage: try host(.manageURL), graph: try host(.graphURL)),
            publisherID: try parsed(.publisherID) { try? Validation.guid($0, field: "publisherId") },
            requestsPerMinute: try number(.requestsPerMinute))
    }

    public func collection() throws -> CollectionSettings {
        CollectionSettings(
            pollInterval: .seconds(try number(.pollInterval)),
            backfill: TimeInterval(try number(.backfillHours) * 3600),
            trailingRelist: TimeInterval(try number(.relistMinutes) * 60),
            workers: try number(.workers),
            blobBufferBytes: try number(.blobBufferBytes),
            maxBlobBytes: try number(.maxBlobBytes))
    }
}
