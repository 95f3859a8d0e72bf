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
        adminToken: Secret,
        metrics: PrometheusCollectorRegistry,
        maxBodyBytes: Int = defaultMaxBodyBytes,
        logger: Logger
    ) throws -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ObserveAndMapErrorsMiddleware(logger: logger, metrics: metrics))
        router.add(middleware: BearerTokenMiddleware(adminToken: adminToken))
        router.add(middleware: BodyLimitMiddleware(maxBytes: maxBodyBytes))
        let handler = AdminAPIHandler(
            store: store, readiness: readiness, validator: validator, status: status, deadLetters: deadLetters,
            retrier: retrier, metrics: metrics, logger: logger)
        try handler.registerHandlers(
            on: router, middlewares: [DeclaredHeadersMiddleware()])
        return router
    }
}
