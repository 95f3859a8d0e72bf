import GatewayCore
import Logging
import ServiceLifecycle
import Synchronization

/// The router stage (docs/destinations.md): one ``UTMStackForwarder`` per destination, each with its own byte
/// budget, stream, reconnect backoff and dead letters, so that one UTMStack that is down or hung holds back only its
/// own tenants. `default` is the configuration's; the stored destinations are read every `refreshInterval` (and at
/// once when a poll names one not known yet). Forwarders are keyed by the destination's generation, which every
/// create and change takes anew and which is never reused: a destination that changed, or was deleted and created
/// again under its name, gets a new forwarder and the old one drains what it holds, then stops; a deleted one drains
/// and stops; one that cannot be loaded (its key does not open, its endpoint is no longer allowed) has none, and only
/// its own tenants wait. Engine notifications go to the tenant's own destination.
public final class DestinationRouter: Service, DestinationMonitor, ProblemNotifier, Sendable {
    let base: ForwarderConfiguration
    let store: any DestinationStore
    let tenants: any TenantStore
    let deadLetters: any DeadLetterStore
    let refreshInterval: Duration
    let logger: Logger
    private let routes: Mutex<[String: Route]>
    /// Forwarders to run, handed to ``run()``'s task group.
    private let started = AsyncStream.makeStream(of: UTMStackForwarder.self)
    /// One refresh at a time (a poll's and the loop's).
    private let refreshing = Mutex(false)
    /// Stored destinations that could not be loaded, by name: the generation (logged once) and why.
    private let unusable = Mutex<[String: (generation: Int64, error: GatewayError)]>([:])

    struct Route {
        var forwarder: UTMStackForwarder
        var notifier: EngineNotifier
        /// The stored destination's generation (nil: `default`, from the configuration).
        var generation: Int64?
    }

    /// - Parameter base: `default`'s configuration; a stored destination's forwarder takes its tunables and
    ///   replaces the name and the endpoint.
    public init(
        base: ForwarderConfiguration, store: any DestinationStore, tenants: any TenantStore, deadLetters: any DeadLetterStore,
        refreshInterval: Duration = .seconds(5), logger: Logger
    ) {
        var base = base
        base.destination = Destination.defaultName
        self.base = base
        self.store = store
        self.tenants = tenants
        self.deadLetters = deadLetters
        self.refreshInterval = refreshInterval
        self.logger = logger
        let forwarder = UTMStackForwarder(configuration: base, deadLetters: deadLetters, logger: logger)
        routes = Mutex([base.destination: Route(forwarder: forwarder, notifier: EngineNotifier(endpoint: base.endpoint, logger: logger))])
        started.continuation.yield(forwarder)
    }

    /// The forwarder of the destination a tenant names; reads the destinations again when it is not known yet, or
    /// known only at a generation older than the tenant saw (`generation`, ``Tenant/destinationGeneration``): a
    /// destination changed, or deleted and created again, is never served by its old forwarder once a tenant saw the
    /// change, even before the next periodic refresh.
    public func forwarder(for name: String, generation: Int64? = nil) async throws -> UTMStackForwarder {
        func current() -> UTMStackForwarder? {
            routes.withLock { routes in
                guard let route = routes[name] else { return nil }
                if let generation, let known = route.generation, known < generation { return nil }
                return route.forwarder
            }
        }
        if let forwarder = current() { return forwarder }
        try await refresh()
        if let forwarder = current() { return forwarder }
        throw unknown(name)
    }

    private func unknown(_ name: String) -> GatewayError {
        if unusable.withLock({ $0[name] != nil }) {
            return .destinationUnavailable(name, "its stored settings cannot be used (the gateway's log says why)")
        }
        if routes.withLock({ $0[name] != nil }) {
            return .destinationUnavailable(name, "it changed and its new settings are not loaded yet")
        }
        return .destinationUnavailable(name, "this gateway knows no destination of that name")
    }

    /// The forwarder of the tenant's destination now (`default` for no tenant).
    public func forwarder(of tenant: TenantID?) async throws -> UTMStackForwarder {
        guard let tenant else { return try await forwarder(for: Destination.defaultName) }
        guard let tenant = try await tenants.get(tenant) else { return try await forwarder(for: Destination.defaultName) }
        return try await forwarder(for: tenant.destination, generation: tenant.destinationGeneration)
    }

    public func health(of name: String) async -> DestinationHealth? {
        guard let forwarder = routes.withLock({ $0[name]?.forwarder }) else { return nil }
        return await forwarder.health
    }

    // MARK: Notifications

    public func report(_ problem: IntegrationProblem) async {
        await (try? await notifier(of: problem.tenant))?.report(problem)
    }

    public func deliver(_ problem: IntegrationProblem) async throws {
        try await notifier(of: problem.tenant).deliver(problem)
    }

    private func notifier(of tenant: TenantID) async throws -> EngineNotifier {
        let name = try await withTimeout(.seconds(5)) { [tenants] in try await tenants.get(tenant)?.destination } ?? Destination.defaultName
        if routes.withLock({ $0[name] == nil }) { try await refresh() }
        guard let notifier = routes.withLock({ $0[name]?.notifier }) else { throw unknown(name) }
        return notifier
    }

    // MARK: Refresh

    /// Reads the stored destinations and starts, replaces or retires forwarders to match (at most 5 s).
    func refresh() async throws {
        let mine = refreshing.withLock { busy in
            if busy { return false }
            busy = true
            return true
        }
        guard mine else {
            // Another refresh is under way: wait for it (bounded like one).
            let deadline = ContinuousClock.now + .seconds(5)
            while refreshing.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            return
        }
        defer { refreshing.withLock { $0 = false } }
        let stored = try await withTimeout(.seconds(5)) { [store] in try await store.forwardingDestinations() }
        let known = routes.withLock { $0.mapValues(\.generation) }
        var fresh: [String: Route] = [:]
        var failed: [String: (generation: Int64, error: GatewayError)] = [:]
        for destination in stored where known[destination.name] != .some(destination.generation) {
            do throws(GatewayError) {
                let configuration = try forwarderConfiguration(destination.name, destination.settings.get())
                fresh[destination.name] = Route(
                    forwarder: UTMStackForwarder(configuration: configuration, deadLetters: deadLetters, logger: logger),
                    notifier: EngineNotifier(endpoint: configuration.endpoint, logger: logger), generation: destination.generation)
            } catch {
                failed[destination.name] = (destination.generation, error)
            }
        }
        // What stays routed: the stored destinations that loaded (or are known at their generation). A destination
        // that changed and cannot be loaded loses its old forwarder too: its old endpoint is no longer its own.
        let routed = Set(stored.map(\.name)).subtracting(failed.keys)
        let retired = routes.withLock { routes in
            var retired: [UTMStackForwarder] = []
            for (name, route) in fresh {
                if let old = routes[name] { retired.append(old.forwarder) }
                routes[name] = route
            }
            for (name, route) in routes where route.generation != nil && !routed.contains(name) {
                retired.append(route.forwarder)
                routes.removeValue(forKey: name)
            }
            return retired
        }
        // A destination without a route is read again at every refresh: `failed` is all that cannot be used now.
        let newlyFailed = unusable.withLock { unusable in
            defer { unusable = failed }
            return failed.filter { name, failure in unusable[name]?.generation != failure.generation }
        }
        for (name, failure) in newlyFailed.sorted(by: { $0.key < $1.key }) {
            // The code and message only: they name the destination and the remedy, never a row value or a key.
            logger.error(
                "destination not loaded: its tenants wait until it is fixed; the others are not affected",
                metadata: ["destination": "\(name)", "generation": "\(failure.generation)", "code": "\(failure.error.code)",
                           "reason": "\(failure.error.message)"])
        }
        for (name, route) in fresh {
            logger.info("destination forwarder started", metadata: ["destination": "\(name)", "generation": "\(route.generation ?? 0)"])
            started.continuation.yield(route.forwarder)
        }
        for forwarder in retired {
            logger.info("destination forwarder retired: it drains what it holds", metadata: ["destination": "\(forwarder.configuration.destination)"])
            forwarder.retire()
        }
    }

    /// `default`'s tunables with the stored destination's name, endpoint and connection key.
    func forwarderConfiguration(_ name: String, _ settings: DestinationSettings) throws(GatewayError) -> ForwarderConfiguration {
        var configuration = base
        configuration.destination = name
        switch settings.endpoint {
        case .socket(let path):
            configuration.endpoint = .engineSocket(path: path)
        case .network(let host, let port, let serverName, let caPEM):
            guard let key = settings.connectionKey else {
                throw GatewayError(.internal, code: "corrupt_row", "Network destination \(name) has no connection key.")
            }
            configuration.endpoint = .network(.init(host: host, port: port, ca: caPEM.map { .pem($0) }, serverName: serverName, connectionKey: key))
        }
        return configuration
    }

    // MARK: Service

    /// Runs every forwarder; on graceful shutdown each drains (within its drain timeout) and the router returns once
    /// all have stopped.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withTaskGroup(of: Void.self) { loop in
                    loop.addTask { try? await gracefulShutdown() }
                    loop.addTask {
                        while !Task.isCancelled {
                            do {
                                try await self.refresh()
                            } catch where !Task.isCancelled {
                                self.logger.warning(
                                    "destinations not read; retried", metadata: ["error": "\(String(reflecting: error))"])
                            } catch {}
                            try? await Task.sleep(for: self.refreshInterval)
                        }
                    }
                    await loop.next()
                    loop.cancelAll()
                }
                self.started.continuation.finish()
            }
            for await forwarder in started.stream {
                group.addTask {
                    do {
                        try await forwarder.run()
                    } catch {
                        self.logger.warning(
                            "destination forwarder ended", metadata: ["destination": "\(forwarder.configuration.destination)", "error": "\(error)"])
                    }
                }
            }
        }
    }
}

extension EngineNotifier: ProblemNotifier {}
