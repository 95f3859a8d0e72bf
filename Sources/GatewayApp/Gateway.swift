import ActivityAPI
import AsyncHTTPClient
import AdminAPI
import Collection
import CredentialCrypto
import GatewayCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import PostgresNIO
import PostgresStorage
import Prometheus
import ServiceLifecycle
import UTMStackForwarder

/// The one place where the parts are wired together.
public enum Gateway {
    /// Runs `body` with a connected PostgreSQL client, then shuts the client down.
    public static func withDatabase<R: Sendable>(
        _ url: DatabaseURL, logger: Logger, _ body: @Sendable (Database) async throws -> R
    ) async throws -> R {
        try await url.checkTLS(logger: logger)
        let client = url.makeClient(logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            // Let run() start before the first lease, which would otherwise log a warning.
            try await Task.sleep(for: .milliseconds(10))
            return try await body(Database(client: client, timeout: url.timeout, logger: logger))
        }
    }

    /// `o365-gateway migrate`.
    public static func migrate(_ database: DatabaseURL, logger: Logger) async throws -> [Migration] {
        try await withDatabase(database, logger: logger) { database in
            try await Migrator(database: database, logger: logger).migrate()
        }
    }

    /// Every tenant, read without credentials (`o365-gateway report`).
    public static func tenants(_ database: DatabaseURL, logger: Logger) async throws -> [Tenant] {
        try await withDatabase(database, logger: logger) { database in
            try await requireCurrentSchema(database, logger: logger)
            return try await PostgresTenantStore.list(in: database)
        }
    }

    /// `o365-gateway reseal`: re-encrypt every credential under the active key.
    public static func reseal(
        _ database: DatabaseURL, keyRing: KeyRing, logger: Logger
    ) async throws -> CredentialResealer.Report {
        try await withDatabase(database, logger: logger) { database in
            try await requireCurrentSchema(database, logger: logger)
            return try await CredentialResealer(
                database: database, sealer: CredentialSealer(keyRing: keyRing), logger: logger
            ).resealAll()
        }
    }

    static func requireCurrentSchema(_ database: Database, logger: Logger) async throws {
        let status = try await Migrator(database: database, logger: logger).status()
        if let problem = status.problem {
            throw GatewayError(.unavailable, code: "schema_outdated", "Refusing to start: \(problem)")
        }
        if !status.unknown.isEmpty {
            logger.warning(
                "database has migrations this build does not know; a newer gateway migrated it",
                metadata: ["versions": "\(status.unknown)"])
        }
    }

    /// The services of `serve`, in dependency order (shutdown runs in reverse): database, Microsoft client, the
    /// destinations' forwarders (``DestinationRouter``), secret expiry watcher, collection scheduler, admin API.
    /// Collectors stop before the forwarders drain.
    public static func services(
        _ configuration: GatewayConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> [any Service] {
        let client = configuration.database.makeClient(logger: logger)
        let database = Database(client: client, timeout: configuration.database.timeout, logger: logger)
        let store = PostgresTenantStore(
            database: database, sealer: CredentialSealer(keyRing: configuration.keyRing), logger: logger)
        let expiry = PostgresSecretExpiryStore(database: database, logger: logger)
        let http = AsyncHTTPExchange.makeClient(maxBodyBytes: configuration.collection.maxBlobBytes)
        do {
            return try services(
                configuration, metrics: metrics, logger: logger, onListening: onListening, client: client, database: database,
                store: store, expiry: expiry, http: http)
        } catch {
            // Never started: nothing else will shut it down.
            try? http.syncShutdown()
            throw error
        }
    }

    private static func services(
        _ configuration: GatewayConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void, client: PostgresClient, database: Database,
        store: PostgresTenantStore, expiry: PostgresSecretExpiryStore, http: HTTPClient
    ) throws -> [any Service] {
        let microsoft = microsoftClient(
            configuration.microsoft, http: http, maxBodyBytes: configuration.collection.maxBlobBytes, recorder: expiry, logger: logger)
        let validator = TenantValidator(
            client: microsoft, overrides: configuration.microsoft.overrides,
            defaultPublisher: configuration.microsoft.publisherID, recorder: expiry)
        let owner = replicaName()
        let collectionStore = PostgresCollectionStore(database: database, logger: logger)
        let deadLetters = PostgresDeadLetterStore(database: database, logger: logger)
        let destinationStore = PostgresDestinationStore(
            database: database, sealer: CredentialSealer(keyRing: configuration.keyRing), policy: configuration.effectiveDestinationPolicy,
            logger: logger)
        let destinations = DestinationRouter(
            base: configuration.forwarder, store: destinationStore, tenants: store, deadLetters: deadLetters, logger: logger)
        let watcher = SecretExpiryWatcher(
            owner: owner, tenants: store, store: expiry, validator: validator, notifier: destinations,
            webhook: configuration.alertWebhook, policy: configuration.alertPolicy, interval: configuration.expiryRound,
            logger: logger, gauges: ExpiryGauges(perTenant: configuration.metricsPerTenant))
        let scheduler = CollectionScheduler(
            owner: owner, tenants: store, store: collectionStore,
            microsoft: microsoft, validator: validator, destinations: destinations,
            memory: ResponseMemoryBudget(limit: configuration.collection.blobBufferBytes), reporter: destinations,
            settings: configuration.collection, logger: logger)
        let router = try AdminRouter.build(
            store: store,
            readiness: GatewayReadiness(database: database, scheduler: scheduler, leaseTTL: configuration.collection.leaseTTL, logger: logger),
            validator: validator,
            status: CollectionStatusReader(
                store: collectionStore, deadLetters: deadLetters, pollInterval: configuration.collection.pollInterval),
            deadLetters: deadLetters, retrier: DeadLetterResender(store: deadLetters, destinations: destinations),
            destinations: destinationStore, monitor: destinations,
            defaultDestination: configuration.forwarder.endpoint.destinationEndpoint,
            adminToken: configuration.adminToken, metrics: metrics,
            maxBodyBytes: configuration.maxRequestBodyBytes, logger: logger)
        // Clients send customers' secrets to the admin API: TLS when a certificate is given; without one, a listener
        // beyond this machine is worth a warning (docs/configuration.md: put it behind TLS).
        let server: HTTPServerBuilder
        if let tls = configuration.adminTLS {
            server = try .tls(configuration.adminListener.http1(), tlsConfiguration: tls.serverConfiguration)
        } else {
            server = configuration.adminListener.http1()
            if !configuration.listen.isLoopback {
                logger.warning(
                    "the admin API listens beyond this machine without TLS; set O365GW_TLS_CERT_FILE and O365GW_TLS_KEY_FILE, or put it behind a TLS proxy",
                    metadata: ["listen": "\(configuration.listen)"])
            }
        }
        let app = Application(
            router: router,
            server: server,
            configuration: .init(
                address: .hostname(configuration.listen.host, port: configuration.listen.port),
                serverName: "o365-gateway"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        let reloader: [any Service] = configuration.adminTLS.map {
            [AdminTLSReloader(tls: $0, interval: configuration.tlsCheckInterval, logger: logger)]
        } ?? []
        return [client, HTTPClientShutdown(client: http), destinations, watcher, scheduler] + reloader + [
            AdminService(database: database, app: app, logger: logger)
        ]
    }

    /// A replica's lease owner name: the host name and a random suffix (a restarted process is a new owner).
    static func replicaName() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func microsoftClient(
        _ settings: MicrosoftSettings, http: HTTPClient, maxBodyBytes: Int, recorder: (any SecretExpiryRecorder)? = nil,
        logger: Logger
    ) -> ActivityClient {
        let exchange = AsyncHTTPExchange(client: http, maxBodyBytes: maxBodyBytes)
        return ActivityClient(
            exchange: exchange, tokens: TokenProvider(exchange: exchange, recorder: recorder, logger: logger),
            configuration: .init(requestsPerMinute: settings.requestsPerMinute, maxRetries: settings.maxRetries), logger: logger)
    }

    /// `o365-gateway serve`: runs until SIGTERM or SIGINT.
    /// - Parameter companions: services started first and stopped last (the demo's receiver and simulator).
    public static func serve(
        _ configuration: GatewayConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger,
        companions: [any Service] = [], onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try await configuration.database.checkTLS(logger: logger)
        let all = companions + (try services(configuration, metrics: metrics, logger: logger, onListening: onListening))
        var group = ServiceGroupConfiguration(
            services: all.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Collectors and the forwarder each drain for at most their drain timeouts (15 s); whatever still waits after
        // this is cancelled, so a stop never hangs (Kubernetes' grace period must be longer).
        group.maximumGracefulShutdownDuration = configuration.collection.drainTimeout + configuration.forwarder.drainTimeout + .seconds(5)
        group.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()
    }
}

/// Shuts the Microsoft client down once the services that use it have stopped (it comes before them in the list,
/// and a service group stops its services in reverse order).
struct HTTPClientShutdown: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// Serves the admin API once the schema is known to be current; refuses to start otherwise.
struct AdminService: Service {
    let database: Database
    let app: Application<RouterResponder<BasicRequestContext>>
    let logger: Logger

    func run() async throws {
        try await Gateway.requireCurrentSchema(database, logger: logger)
        // Signals belong to the outer service group, which shuts services down in order.
        try await app.runService(gracefulShutdownSignals: [])
    }
}

/// Reads the admin API's certificate and key files every `interval` (cert-manager renews them in place): a renewed
/// pair is used from the next connection on, without a restart; one that does not load is logged, and the previous
/// pair goes on serving.
struct AdminTLSReloader: Service {
    let tls: AdminTLS
    let interval: Duration
    let logger: Logger

    func run() async throws {
        // Ends the wait on graceful shutdown or cancellation; either ends the loop.
        while (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil {
            switch tls.reload() {
            case .unchanged: break
            case .renewed:
                logger.info("admin API certificate renewed; new connections use it", metadata: ["file": "\(tls.certificateFile)"])
            case .refused(let why):
                logger.warning("admin API certificate files changed but were not loaded; the previous certificate is still served", metadata: ["reason": "\(why)"])
            }
        }
    }
}

/// `/readyz`: the database answers within 5 s, its schema is current, and a lease round succeeded within the lease
/// TTL. The reasons are generic (the endpoint is unauthenticated); the details go to the log.
struct GatewayReadiness: ReadinessCheck {
    let database: Database
    let scheduler: CollectionScheduler
    let leaseTTL: TimeInterval
    let logger: Logger

    func notReadyReason() async -> String? {
        let schema: String?
        do {
            schema = try await withTimeout(.seconds(5)) { [database, logger] in
                try await Migrator(database: database, logger: logger).status().problem
            }.map { _ in "the database schema is not the one this gateway needs; run o365-gateway migrate" }
        } catch {
            logger.warning("readiness: the database did not answer", metadata: ["error": "\(String(reflecting: error))"])
            return "the database does not answer"
        }
        if let schema { return schema }
        let age = scheduler.leaseRoundAge
        if age > .seconds(leaseTTL) {
            return "no lease round has succeeded for \(age.components.seconds) s"
        }
        return nil
    }
}

extension ForwarderConfiguration.Endpoint {
    /// The configuration's UTMStack as the `default` destination (its CA is a file, not shown).
    var destinationEndpoint: Destination.Endpoint {
        switch self {
        case .engineSocket(let path): .socket(path: path)
        case .network(let network): .network(host: network.host, port: network.port, serverName: network.serverName, caPEM: nil)
        }
    }
}
