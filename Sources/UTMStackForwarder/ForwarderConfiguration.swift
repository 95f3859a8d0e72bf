import GatewayCore

/// Where and how to deliver logs to UTMStack.
public struct ForwarderConfiguration: Sendable {
    public enum Endpoint: Sendable {
        /// The engine's local gRPC service on a Unix socket (`Engine/Input`); the default.
        case engineSocket(path: String)
        /// UTMStack's network service (`Integration/ProcessLog`) over TLS, for a gateway off the UTMStack host.
        case network(NetworkEndpoint)
    }

    /// The CA that signed UTMStack's certificate: a PEM file (read at each connection, so a CA rotated in place is
    /// picked up) or the PEM itself (a stored destination's).
    public enum CertificateAuthority: Sendable, Equatable {
        case file(String)
        case pem(String)
    }

    public struct NetworkEndpoint: Sendable {
        public var host: String
        public var port: Int
        /// Nil trusts the system store.
        public var ca: CertificateAuthority?
        /// Name to verify the certificate against (and send as SNI) when it differs from `host`.
        public var serverName: String?
        /// Sent as the `connection-key` metadata.
        public var connectionKey: Secret

        public init(host: String, port: Int = 50051, ca: CertificateAuthority? = nil, serverName: String? = nil, connectionKey: Secret) {
            self.host = host
            self.port = port
            self.ca = ca
            self.serverName = serverName
            self.connectionKey = connectionKey
        }
    }

    public static let defaultSocketPath = "/workdir/sockets/engine_server.sock"

    /// The destination's name (docs/destinations.md): the `destination` label of every metric of this forwarder.
    public var destination: String
    public var endpoint: Endpoint
    /// Bytes of logs held at most (queued and in flight); collectors wait when it is full.
    public var inFlightByteBudget: Int
    /// Logs sent at most without an acknowledgement.
    public var maxInFlightLogs: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// How long a graceful shutdown waits for outstanding logs to be acknowledged.
    public var drainTimeout: Duration
    /// The longest the oldest log in flight may wait without any acknowledgement before the connection is given up
    /// and its logs resent on a new one (`O365GW_UTMSTACK_ACK_TIMEOUT_SECONDS`).
    public var ackTimeout: Duration
    /// Logs in flight and nothing acknowledged for this long: a PING is sent (`O365GW_UTMSTACK_KEEPALIVE_SECONDS`).
    public var keepaliveInterval: Duration
    /// A PING not answered within this gives the connection up.
    public var keepaliveTimeout: Duration
    /// The largest log message the engine takes (grpc-go's default receive limit, 4 MiB); a larger log is set
    /// aside at once (`O365GW_UTMSTACK_MAX_MESSAGE_BYTES`).
    public var maxMessageBytes: Int
    /// Calls that may end on the same log (sent alone after the first) before it is set aside.
    public var maxAttempts: Int
    /// How long connecting, and then the TLS handshake, may take.
    public var connectTimeout: Duration = .seconds(10)

    public static let grpcDefaultMaxMessageBytes = 4 << 20

    public init(
        destination: String = Destination.defaultName, endpoint: Endpoint = .engineSocket(path: defaultSocketPath),
        inFlightByteBudget: Int = 16 << 20, maxInFlightLogs: Int = 4096, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(10),
        drainTimeout: Duration = .seconds(15), ackTimeout: Duration = .seconds(30), keepaliveInterval: Duration = .seconds(10),
        keepaliveTimeout: Duration = .seconds(10), maxMessageBytes: Int = grpcDefaultMaxMessageBytes, maxAttempts: Int = 3
    ) {
        self.destination = destination
        self.endpoint = endpoint
        self.inFlightByteBudget = inFlightByteBudget
        self.maxInFlightLogs = maxInFlightLogs
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.drainTimeout = drainTimeout
        self.ackTimeout = ackTimeout
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveTimeout = keepaliveTimeout
        self.maxMessageBytes = maxMessageBytes
        self.maxAttempts = maxAttempts
    }
}

/// Reconnect attempts in a row, each waiting as `RetryBackoff` says.
struct Backoff {
    let initial: Duration
    let maximum: Duration
    private var attempt = 0

    init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    mutating func next() -> Duration {
        defer { attempt += 1 }
        return RetryBackoff.delay(attempt: attempt, base: initial, cap: maximum)
    }

    mutating func reset() { attempt = 0 }
}
