import Foundation
import GatewayCore
import Logging
import NIOCore
import Synchronization

/// Sends integration problems to the engine's `Notify` stream as `Message`s with topic `integration_failure`
/// and a JSON body naming the tenant and the advice. The same problem is sent at most once per `repeatAfter`.
/// UTMStack's network service has no `Notify`; there problems are only logged.
public final class EngineNotifier: ProblemReporter {
    public static let topic = "integration_failure"
    let socketPath: String?
    let repeatAfter: Duration
    let logger: Logger
    private let lastSent = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(endpoint: ForwarderConfiguration.Endpoint, repeatAfter: Duration = .seconds(900), logger: Logger) {
        if case .engineSocket(let path) = endpoint { socketPath = path } else { socketPath = nil }
        self.repeatAfter = repeatAfter
        self.logger = logger
    }

    public func report(_ problem: IntegrationProblem) async {
        let key = "\(problem.tenant)|\(problem.code)|\(problem.contentType?.rawValue ?? "")"
        let now = ContinuousClock.now
        let due = lastSent.withLock { sent -> Bool in
            if let last = sent[key], now - last < repeatAfter { return false }
            sent[key] = now
            return true
        }
        guard due else { return }
        logger.warning(
            "integration problem",
            metadata: ["tenant": "\(problem.tenant)", "code": "\(problem.code)", "advice": "\(problem.advice)"])
        do {
            try await deliver(problem)
        } catch {
            logger.warning("could not notify UTMStack", metadata: ["code": "\(problem.code)", "error": "\(error)"])
        }
    }

    /// Sends `problem` now, without de-duplication, and returns once UTMStack acknowledged it; throws when it did not.
    /// On the network path there is no `Notify`: nothing is sent (callers log the problem).
    public func deliver(_ problem: IntegrationProblem) async throws {
        guard let socketPath else { return }
        try await send(Self.message(problem, at: Date()), socketPath: socketPath)
    }

    /// The `plugins.Message` fields, in field-number order: id, timestamp, topic, message (JSON).
    static func message(_ problem: IntegrationProblem, at date: Date) -> [String] {
        var body: [String: String] = [
            "tenantId": "\(problem.tenant)", "tenantName": problem.tenantName, "code": problem.code,
            "advice": problem.advice, "source": "o365-gateway",
        ]
        if let contentType = problem.contentType { body["contentType"] = contentType.rawValue }
        let json = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        return [UUID().uuidString.lowercased(), RFC3339.format(date), topic, String(decoding: json, as: UTF8.self)]
    }

    /// Sends one message on a `Notify` call of its own and waits (at most 5 s) for its acknowledgement.
    private func send(_ fields: [String], socketPath: String) async throws {
        try await withTimeout(.seconds(5)) {
            let stream = try await EngineStream.open(.engineSocket(path: socketPath), method: .notify)
            defer { stream.close() }
            var buffer = ByteBuffer()
            GRPCWire.appendMessage(fields, to: &buffer)
            try await stream.send([buffer], endStream: true)
            for try await event in stream.events {
                if case .acknowledged(let ids) = event, ids.contains(fields[0]) { return }
            }
            throw EngineStreamError(description: "UTMStack ended the Notify call without acknowledging the message")
        }
    }
}
