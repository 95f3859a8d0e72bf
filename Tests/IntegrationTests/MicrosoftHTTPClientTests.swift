import ActivityAPI
import AsyncHTTPClient
import Foundation
import Hummingbird
import Testing

/// The HTTP client for Microsoft's hosts (login, Activity API, Graph).
@Suite(.timeLimit(.minutes(1))) struct MicrosoftHTTPClientTests {
    /// A 307 or 308 resends a POST's body to the host it names: followed, a token request would hand the client
    /// secret to that host. The client answers with the redirect instead (and the call fails as any unexpected
    /// status does).
    @Test func aRedirectIsNotFollowedSoASecretStaysWithItsHost() async throws {
        try await withWebhookReceiver { elsewhere, hook in
            let login = Router()
            login.post("/token") { _, _ -> Response in
                Response(status: .temporaryRedirect, headers: [.location: hook.absoluteString])
            }
            let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
            let app = Application(
                router: login, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.runService(gracefulShutdownSignals: []) }
                defer { group.cancelAll() }
                var iterator = ports.makeAsyncIterator()
                let port = try #require(await iterator.next())
                let client = AsyncHTTPExchange.makeClient()
                let exchange = AsyncHTTPExchange(client: client, timeoutSeconds: 10)
                let response: MicrosoftResponse
                do {
                    response = try await exchange.send(MicrosoftRequest(
                        method: "POST", url: "http://127.0.0.1:\(port)/token",
                        headers: [("Content-Type", "application/json")], body: Array(#"{"client_secret":"Secret~value"}"#.utf8)))
                } catch {
                    try await client.shutdown()
                    throw error
                }
                try await client.shutdown()
                #expect(response.status == 307)
                #expect(elsewhere.received.isEmpty, "the body went to the redirect's host: \(elsewhere.received)")
            }
        }
    }
}
