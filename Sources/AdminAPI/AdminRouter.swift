import GatewayCore
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime
import Prometheus

/// Builds the admin HTTP router: the public probes, and the generated OpenAPI operations behind authentication, each
/// operation's access requirement and the body checks; errors mapped to the API's error shape.
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
        // Access is attached to the routes, never decided from a path: the probes are the public group; every
        // operation of the generated server is in the API group, whose requests are authenticated whatever spelling
        // of the path reached them, and each operation then checks its own requirement (AccessPolicy).
        let publicRoutes = router.group().add(middleware: RequestBodyMiddleware(maxBytes: maxBodyBytes))
        Probes.register(on: publicRoutes, readiness: readiness, metrics: metrics)
        let api = router.group()
            .add(middleware: AuthenticationMiddleware(adminToken: adminToken))
            .add(middleware: RequestBodyMiddleware(maxBytes: maxBodyBytes))
        let handler = AdminAPIHandler(
            store: store, validator: validator, status: status, deadLetters: deadLetters, retrier: retrier,
            destinations: destinations, monitor: monitor, defaultDestination: defaultDestination, logger: logger)
        try handler.registerHandlers(on: api, middlewares: [AccessMiddleware(), DeclaredHeadersMiddleware()])
        routes.load(router.routes)
        return router
    }
}
