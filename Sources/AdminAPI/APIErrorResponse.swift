import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import OpenAPIRuntime

/// Turns any error thrown while handling a request into the documented error shape
/// `{"error": {"code", "message"}}` with its HTTP status. The message never carries request data other than
/// field names and the short, non-secret values the validators quote.
struct APIErrorResponse: Error, Equatable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// `Allow` with a 405, `ETag` with a 412.
    var headers: HTTPFields = [:]

    init(status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    init(_ error: GatewayError) {
        var headers: HTTPFields = [:]
        if let current = error.currentVersion { headers[.eTag] = "\"\(current)\"" }
        self.init(status: Self.status(of: error.kind), code: error.code, message: error.message, headers: headers)
    }

    static func methodNotAllowed(_ method: HTTPRequest.Method, allowed: [String]) -> APIErrorResponse {
        APIErrorResponse(
            status: .methodNotAllowed, code: "method_not_allowed",
            message: "\(method) is not served here; this path answers \(allowed.joined(separator: ", ")).",
            headers: [.allow: allowed.joined(separator: ", ")])
    }

    /// Classifies an error; `nil` means it is the gateway's own fault (a 500).
    static func from(_ error: any Error) -> APIErrorResponse? {
        switch error {
        case let error as GatewayError:
            return APIErrorResponse(error)
        case let error as ServerError:
            // A decoding error of a request that has no body is about its parameters (`?limit=abc`), not a body.
            if error.underlyingError is DecodingError, [.get, .head, .delete].contains(error.request.method) {
                return APIErrorResponse(
                    status: .badRequest, code: "invalid_parameter",
                    message: "A query parameter has an invalid value; the parameters are described at /api/v1/openapi.yaml.")
            }
            if let mapped = from(error.underlyingError) { return mapped }
            guard (400..<500).contains(error.httpStatus.code) else { return nil }
            return APIErrorResponse(
                status: error.httpStatus, code: code(forStatus: error.httpStatus),
                message: error.causeDescription + ".")
        case let error as DecodingError:
            return APIErrorResponse(error)
        case let error as HTTPError:
            guard (400..<500).contains(error.status.code) else { return nil }
            switch error.status {
            case .notFound:
                return APIErrorResponse(
                    status: .notFound, code: "route_not_found",
                    message: "No such endpoint; the API is described at /api/v1/openapi.yaml.")
            case .contentTooLarge:
                return APIErrorResponse(
                    status: .contentTooLarge, code: "payload_too_large",
                    message: "The request body is larger than the limit of this API.")
            default:
                return APIErrorResponse(
                    status: error.status, code: code(forStatus: error.status),
                    message: error.body ?? error.status.reasonPhrase)
            }
        default:
            return nil
        }
    }

    static let internalError = APIErrorResponse(
        status: .internalServerError, code: "internal_error",
        message: "The gateway failed to handle this request; its log has the details. Retry later.")

    static func status(of kind: GatewayError.Kind) -> HTTPResponse.Status {
        switch kind {
        case .invalidInput: .badRequest
        case .unauthorized: .unauthorized
        case .notFound: .notFound
        case .conflict: .conflict
        case .preconditionFailed: .preconditionFailed
        case .payloadTooLarge: .contentTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .notImplemented: .notImplemented
        case .unavailable: .serviceUnavailable
        case .internal: .internalServerError
        }
    }

    static func code(forStatus status: HTTPResponse.Status) -> String {
        switch status {
        case .unsupportedMediaType: "unsupported_media_type"
        case .notAcceptable: "not_acceptable"
        case .methodNotAllowed: "method_not_allowed"
        case .contentTooLarge: "payload_too_large"
        default: "invalid_request"
        }
    }

    func response() -> Response {
        struct Body: Encodable {
            struct Detail: Encodable { var code: String; var message: String }
            var error: Detail
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(Body(error: .init(code: code, message: message)))) ?? Data()
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension APIErrorResponse {
    /// A request body that does not match the schema.
    init(_ error: DecodingError) {
        func path(_ codingPath: [any CodingKey]) -> String {
            var text = ""
            for key in codingPath {
                if let index = key.intValue { text += "[\(index)]" } else { text += text.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return text.isEmpty ? "body" : text
        }
        func invalid(_ code: String, _ message: String) -> APIErrorResponse {
            APIErrorResponse(status: .badRequest, code: code, message: message)
        }
        switch error {
        case .keyNotFound(let key, let context):
            self = invalid("missing_field", "\(path(context.codingPath + [key])) is required.")
        case .valueNotFound(_, let context):
            self = invalid("invalid_field", "\(path(context.codingPath)) must not be null.")
        case .typeMismatch(_, let context) where context.codingPath.isEmpty:
            self = invalid("invalid_json", "The body must be one JSON object.")
        case .typeMismatch(let type, let context):
            self = invalid("invalid_field", "\(path(context.codingPath)) must be \(Self.jsonKind(type)).")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            let lastName = context.codingPath.last { $0.intValue == nil }?.stringValue
            if context.codingPath.isEmpty {
                self = invalid("invalid_json", "The body is not valid JSON; send one JSON object.")
            } else if context.debugDescription.hasPrefix("Additional properties are disabled") {
                self = invalid(
                    "unknown_field",
                    "\(field) is not a field of this request; check its spelling against /api/v1/openapi.yaml.")
            } else if let allowed = lastName.flatMap(Self.allowedValues) {
                self = invalid("invalid_field", "\(field) must be one of \(allowed).")
            } else {
                self = invalid("invalid_field", "\(field) has an invalid value.")
            }
        @unknown default:
            self = invalid("invalid_request", "The body does not match the schema at /api/v1/openapi.yaml.")
        }
    }

    static func allowedValues(field: String) -> String? {
        switch field {
        case "cloud": Cloud.allCases.map(\.rawValue).joined(separator: ", ")
        case "contentTypes": ContentType.allCases.map(\.rawValue).joined(separator: ", ") + " (case-exact)"
        default: nil
        }
    }

    static func jsonKind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is Int64.Type, is Double.Type: "a number"
        case is [Any].Type: "an array"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "a JSON object or value of the documented type"
        }
    }
}
