import Foundation
import Hummingbird
import Synchronization

/// A webhook receiver on a loopback port: records each POSTed JSON body; answers `status` (500 to make the gateway
/// retry).
final class WebhookReceiver: Sendable {
    /// Bodies as received (JSON text), parsed when read.
    private let bodies = Mutex<[Data]>([])
    private let failures = Mutex(0)

    /// The next `count` posts are answered 503.
    func failNext(_ count: Int) { failures.withLock { $0 = count } }

    var received: [[String: Any]] {
        bodies.withLock { $0 }.compactMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
    }

    func handle(_ data: Data) -> HTTPResponse.Status {
        let failing = failures.withLock { count -> Bool in
            guard count > 0 else { return false }
            count -= 1
            return true
        }
        if failing { return .serviceUnavailable }
        bodies.withLock { $0.append(data) }
        return .ok
    }
}


func withWebhookReceiver<R: Sendable>(
    _ body: @escaping @Sendable (WebhookReceiver, URL) async throws -> R
) async throws -> R {
    let receiver = WebhookReceiver()
    let router = Router()
    router.post("/hook") { request, _ -> Response in
        let buffer = try await request.body.collect(upTo: 1 << 20)
        return Response(status: receiver.handle(Data(buffer.readableBytesView)))
    }
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: quietLogger)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await app.runService(gracefulShutdownSignals: []); return nil }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        group.addTask { try await body(receiver, URL(string: "http://127.0.0.1:\(port)/hook")!) }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}
