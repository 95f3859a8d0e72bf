import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GatewayCore
import Logging
import Synchronization
import UTMStackProtocol

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
        guard let socketPath else { return }
        do {
            try await send(Self.message(problem, at: Date()), socketPath: socketPath)
        } catch {
            logger.warning("could not notify UTMStack", metadata: ["code": "\(problem.code)", "error": "\(error)"])
        }
    }

    static func message(_ problem: IntegrationProblem, at date: Date) -> Plugins_Message {
        var body: [String: String] = [
            "tenantId": "\(problem.tenant)", "tenantName": problem.tenantName, "code": problem.code,
            "advice": problem.advice, "source": "o365-gateway",
        ]
        if let contentType = problem.contentType { body["contentType"] = contentType.rawValue }
        let json = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        var message = Plugins_Message()
        message.id = UUID().uuidString.lowercased()
        message.timestamp = RFC3339.format(date)
        message.topic = topic
        message.message = String(decoding: json, as: UTF8.self)
        return message
    }

    private func send(_ message: Plugins_Message, socketPath: String) async throws {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
        var options = CallOptions.defaults
        options.waitForReady = false
        options.timeout = .seconds(5)
        try await withGRPCClient(transport: transport) { client in
            try await Plugins_Engine.Client(wrapping: client).notify(
                options: options,
                requestProducer: { writer in try await writer.write(message) },
                onResponse: { response in
                    for try await _ in response.messages { break }
                })
        }
    }
}
