import GatewayCore
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime
import Prometheus

/// Builds the admin HTTP router: the generated OpenAPI routes behind the error mapping, token and size limit.
public enum AdminRouter {
    public static let defaultMaxBodyBytes = 64 * 1024

    public static func build(
        store: any TenantStore,
        readiness: any ReadinessCheck,
        validator: (any CredentialValidator)?,
        status: (any CollectionStatusSource)? = nil,
        deadLetters: (any DeadLetterStore)? = nil,
        retrier: (any DeadLetterRetrier)? = nil,
        destinations: (any DestinationStore)? = nil,
        monitor: (any DestinationMonitor)? = nil,
        defaultDestination: Destination.Endpoint? = nil,
        adminToken: Secret,
        metrics: PrometheusCollectorRegistry,
        maxBodyBytes: Int = defaultMaxBodyBytes,
        logger: Logger
    ) throws -> Router<BasicRequestContext> {
        // HEAD wherever GET is (RFC 9110 §9.3.2): the GET handler's answer without its body.
        let router = Router(options: .autoGenerateHeadEndpoints)
        let routes = RouteTable()
        router.add(middleware: ObserveAndMapErrorsMiddleware(logger: logger, metrics: metrics, routes: routes))
        router.add(middleware: BearerTokenMiddleware(adminToken: adminToken))
        router.add(middleware: BodyLimitMiddleware(maxBytes: maxBodyBytes))
        Probes.register(on: router, readiness: readiness, metrics: metrics)
        let handler = AdminAPIHandler(
            store: store, validator: validator, status: status, deadLetters: deadLetters, retrier: retrier,
            destinations: destinations, monitor: monitor, defaultDestination: defaultDestination, logger: logger)
        try handler.registerHandlers(
            on: router, middlewares: [DeclaredHeadersMiddleware()])
        routes.load(router.routes)
        return router
    }
}
