import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus
import Synchronization

/// The unauthenticated endpoints every probe, monitor and scraper reads: `/healthz`, `/readyz`, `/metrics` and the
/// OpenAPI document. Documented in openapi.yaml but served here, not by the generated server: they answer whatever
/// `Accept` a client sends (a probe configured for JSON, Prometheus asking for OpenMetrics first), and HEAD like GET.
enum Probes {
    static func register(
        on router: RouterGroup<BasicRequestContext>, readiness: any ReadinessCheck, metrics: PrometheusCollectorRegistry
    ) {
        router.get("/healthz") { _, _ in text(.ok, "ok\n") }
        router.get("/readyz") { _, _ in
            if let reason = await readiness.notReadyReason() { return text(.serviceUnavailable, reason + "\n") }
            return text(.ok, "ready\n")
        }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(4096)
            metrics.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/api/v1/openapi.yaml") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.yaml)))
        }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// The routes the router serves, by path template, so a known path asked with another method answers 405 with
/// `Allow` (RFC 9110 §15.5.6) instead of 404. Filled once the routes are registered.
final class RouteTable: Sendable {
    private struct Route: Sendable {
        var components: [Substring]
        var methods: Set<String>
    }

    private let routes = Mutex<[Route]>([])

    func load(_ descriptions: [Router<BasicRequestContext>.RouteDescription]) {
        var byPath: [String: Set<String>] = [:]
        for route in descriptions { byPath["\(route.path)", default: []].insert(route.method.rawValue) }
        routes.withLock { routes in
            routes = byPath.map { path, methods in
                Route(components: path.split(separator: "/"), methods: methods)
            }
        }
    }

    /// The methods served at `path` (HEAD wherever GET is), sorted; empty when no route has this path.
    func allowedMethods(_ path: String) -> [String] {
        let components = path.split(separator: "/")
        var methods = routes.withLock { routes in
            Set(routes.filter { route in
                route.components.count == components.count
                    && zip(route.components, components).allSatisfy { template, actual in
                        template.hasPrefix(":") || template.hasPrefix("{") || template == actual
                    }
            }.flatMap(\.methods))
        }
        if methods.contains("GET") { methods.insert("HEAD") }
        return methods.sorted()
    }
}
