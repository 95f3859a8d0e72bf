import GatewayCore
import HTTPTypes
import Hummingbird
import OpenAPIRuntime

/// Who sent a request: set by `AuthenticationMiddleware` on the API's routes, read by `AccessMiddleware` for each
/// operation. Only the bootstrap admin token exists today; named tokens and single sign-on add principals.
public struct Principal: Sendable, Equatable {
    public var name: String

    /// The holder of `O365GW_ADMIN_TOKEN`.
    public static let adminToken = Principal(name: "admin-token")

    /// The principal of the request this task serves, nil when it sent no credentials.
    @TaskLocal public static var current: Principal?
}

/// Which operations need what. Access is decided per operation of openapi.yaml, never from a path string: whatever
/// spelling of a path reaches an operation, the operation's own requirement applies. Deny by default: an operation
/// is public only when it is listed here, and the tests check this list against the document's `security: []`.
public enum AccessPolicy {
    public enum Requirement: Sendable, Equatable {
        /// Anyone, with or without credentials (probes, metrics, the API's description).
        case anyone
        /// A caller the gateway knows.
        case authenticated
    }

    /// The operations of openapi.yaml that anyone may call; all served by `Probes`, none takes a body.
    public static let publicOperations: Set<String> = [
        "getHealth", "headHealth", "getReadiness", "headReadiness", "getMetrics", "getOpenAPIDocument",
    ]

    public static func requirement(of operationID: String) -> Requirement {
        publicOperations.contains(operationID) ? .anyone : .authenticated
    }
}

/// Identifies the caller from `Authorization: Bearer <token>` and runs the rest of the request as that principal.
/// Added to the route group that holds the API's operations, so it runs for every request routed to one of them,
/// whatever spelling of the path the router matched. A request without credentials goes on unidentified (the
/// operation decides whether that is enough); wrong credentials are refused here. The comparison takes the same
/// time wherever the tokens differ.
struct AuthenticationMiddleware<Context: RequestContext>: RouterMiddleware {
    let adminToken: Secret

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return try await Principal.$current.withValue(nil) { try await next(request, context) }
        }
        let prefix = "Bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased(),
            adminToken.constantTimeEquals(String(header.dropFirst(prefix.count)))
        else {
            throw GatewayError(
                .unauthorized, code: "invalid_token",
                "The bearer token is wrong; use the value of O365GW_ADMIN_TOKEN that the gateway runs with.")
        }
        return try await Principal.$current.withValue(.adminToken) { try await next(request, context) }
    }
}

/// Enforces `AccessPolicy` for each operation of the generated server, before its handler runs.
struct AccessMiddleware: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        switch AccessPolicy.requirement(of: operationID) {
        case .anyone:
            break
        case .authenticated:
            guard Principal.current != nil else { throw GatewayError.missingToken }
        }
        return try await next(request, body, metadata)
    }
}

extension GatewayError {
    static var missingToken: GatewayError {
        GatewayError(
            .unauthorized, code: "missing_token", "Send the admin token as Authorization: Bearer <O365GW_ADMIN_TOKEN>.")
    }
}
