import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIRuntime
import Prometheus

/// Outermost middleware: maps every error to the JSON error shape, logs one line per request and counts it.
///
/// Never log a `ServerError` or a `Request` as a whole: their descriptions include the decoded body (with the
/// client secret) and the headers (with the bearer token). Only codes, routes and the underlying error are logged.
struct ObserveAndMapErrorsMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    let metrics: PrometheusCollectorRegistry
    /// A path that exists but not with this method answers 405 with `Allow`.
    let routes: RouteTable

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        var response: Response
        var errorCode: String?
        do {
            response = try await next(request, context)
        } catch {
            var mapped: APIErrorResponse
            if let clientError = APIErrorResponse.from(error) {
                mapped = clientError
                if mapped.code == "route_not_found" {
                    let allowed = routes.allowedMethods(request.uri.path)
                    if !allowed.isEmpty { mapped = .methodNotAllowed(request.method, allowed: allowed) }
                }
            } else {
                mapped = .internalError
                logger.error(
                    "request failed",
                    metadata: [
                        "method": "\(request.method)", "route": "\(context.endpointPath ?? "unmatched")",
                        "error": "\(Self.safeDescription(of: error))",
                    ])
            }
            errorCode = mapped.code
            response = mapped.response()
        }
        let route = context.endpointPath ?? "unmatched"
        let elapsed = ContinuousClock.now - started
        metrics.makeCounter(
            name: "o365gw_http_requests_total",
            labels: [("method", "\(request.method)"), ("route", route), ("status", "\(response.status.code)")]
        ).increment()
        metrics.makeDurationHistogram(
            name: "o365gw_http_request_duration_seconds", labels: [("route", route)],
            buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(2)]
        ).record(elapsed)
        var metadata: Logger.Metadata = [
            "method": "\(request.method)", "route": "\(route)", "status": "\(response.status.code)",
            "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
        ]
        if let errorCode { metadata["code"] = "\(errorCode)" }
        logger.info("request", metadata: metadata)
        return response
    }

    /// The underlying error only; for a `ServerError`, its cause and underlying error without input or headers.
    static func safeDescription(of error: any Error) -> String {
        if let error = error as? ServerError {
            return "\(error.causeDescription): \(String(reflecting: error.underlyingError))"
        }
        return String(reflecting: error)
    }
}

/// Requires `Authorization: Bearer <admin token>` on everything under /api except the OpenAPI document.
/// The comparison takes the same time wherever the tokens differ.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let adminToken: Secret
    static var publicPaths: Set<String> { ["/api/v1/openapi.yaml"] }

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/api/"), !Self.publicPaths.contains(path) else {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            throw GatewayError(
                .unauthorized, code: "missing_token",
                "Send the admin token as Authorization: Bearer <O365GW_ADMIN_TOKEN>.")
        }
        let prefix = "Bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased(),
            adminToken.constantTimeEquals(String(header.dropFirst(prefix.count)))
        else {
            throw GatewayError(
                .unauthorized, code: "invalid_token",
                "The bearer token is wrong; use the value of O365GW_ADMIN_TOKEN that the gateway runs with.")
        }
        return try await next(request, context)
    }
}

/// Reads the body up to a limit before anything parses it, so an oversized request costs nothing more; refuses a
/// JSON body that holds `null` anywhere: no field of this API takes null (the generated decoder would read it as
/// absent, and a PATCH with `"dataSource": null` would succeed changing nothing).
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxBytes: Int

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBytes {
            throw tooLarge
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
        if body.readableBytes > 0, request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true,
            let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed]),
            let field = Self.firstNull(in: object, at: "")
        {
            throw GatewayError.invalidField(
                field.isEmpty ? "body" : field, "must not be null; leave the field out to keep it as it is.")
        }
        return try await next(request, context)
    }

    /// The path (`a.b[2]`) of the first null in a parsed JSON value, or nil.
    static func firstNull(in value: Any, at path: String) -> String? {
        switch value {
        case is NSNull:
            return path
        case let object as [String: Any]:
            for key in object.keys.sorted() {
                if let found = firstNull(in: object[key]!, at: path.isEmpty ? key : "\(path).\(key)") { return found }
            }
            return nil
        case let array as [Any]:
            for (index, element) in array.enumerated() {
                if let found = firstNull(in: element, at: "\(path)[\(index)]") { return found }
            }
            return nil
        default:
            return nil
        }
    }

    private var tooLarge: GatewayError {
        GatewayError(
            .payloadTooLarge, code: "payload_too_large",
            "The request body is larger than \(maxBytes) bytes, the limit of this API.")
    }
}

/// swift-openapi-runtime percent-encodes declared response header values (apple/swift-openapi-generator#857), which
/// turns `ETag: "3"` into `%223%22`. ETag and Location are written back as the API meant them.
struct DeclaredHeadersMiddleware: ServerMiddleware {
    static let fields: [HTTPField.Name] = [.eTag, .location]

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, responseBody) = try await next(request, body, metadata)
        for name in Self.fields {
            if let value = response.headerFields[name], let decoded = value.removingPercentEncoding {
                response.headerFields[name] = decoded
            }
        }
        return (response, responseBody)
    }
}
