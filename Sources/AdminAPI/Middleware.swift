import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
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

/// Decides about a request's body before anything reads it, then reads it up to a limit, so an oversized or
/// unwanted body costs nothing more:
/// - a GET, HEAD or DELETE with a body is refused (`unexpected_body`): no operation takes one;
/// - a body from a caller that sent no credentials is refused (`missing_token`) unread: no public operation takes one
///   (`AccessPolicy`), so the caller needs a token anyway;
/// - a body is JSON in UTF-8 (`application/json`, or 415), at most `maxBytes` (413, declared or streamed), one value
///   per key (`duplicate_key`), without `null` anywhere, and readable whole by `JSONBodyCheck` (`invalid_json`).
struct RequestBodyMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxBytes: Int

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard Self.declaresBody(request.headers) else { return try await next(request, context) }
        if [.get, .head, .delete, .options, .trace].contains(request.method) {
            throw GatewayError(
                .invalidInput, code: "unexpected_body", "\(request.method) takes no body here; send the request without one.")
        }
        guard Principal.current != nil else { throw GatewayError.missingToken }
        guard let contentType = request.headers[.contentType], Self.isJSON(contentType) else {
            throw GatewayError(
                .unsupportedMediaType, code: "unsupported_media_type",
                "Send the body as JSON with Content-Type: application/json.")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBytes {
            throw tooLarge
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
        switch JSONBodyCheck.firstProblem(in: body.readableBytesView) {
        case .null(let field):
            throw GatewayError.invalidField(
                field.isEmpty ? "body" : field, "must not be null; leave the field out to keep it as it is.")
        case .duplicateKey(let field):
            throw GatewayError(
                .invalidInput, code: "duplicate_key", "\(field) appears more than once in the body; send each field once.")
        case .malformed:
            throw GatewayError(
                .invalidInput, code: "invalid_json", "The body is not valid JSON; send one JSON object in UTF-8, without a byte-order mark.")
        case nil:
            break
        }
        return try await next(request, context)
    }

    /// A body is coming when its length is declared above zero or it is sent in chunks.
    static func declaresBody(_ headers: HTTPFields) -> Bool {
        if let length = headers[.contentLength] { return length != "0" }
        return headers[.transferEncoding] != nil
    }

    /// `application/json` in any case, with no parameter but `charset=utf-8` (JSON is UTF-8, RFC 8259 §8.1).
    static func isJSON(_ contentType: String) -> Bool {
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard parts.first == "application/json" else { return false }
        return parts.dropFirst().allSatisfy { $0 == "charset=utf-8" || $0 == "charset=\"utf-8\"" }
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
