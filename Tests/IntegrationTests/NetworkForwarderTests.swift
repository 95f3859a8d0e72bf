import Crypto
import Foundation
import SwiftASN1
import GRPCCore
import GRPCNIOTransportHTTP2
import GatewayCore
import Synchronization
import Testing
import UTMStackForwarder
import UTMStackProtocol
import X509

/// A stand-in for UTMStack's network service: `Integration/ProcessLog` over TLS, acknowledging each log and
/// recording the `connection-key` it was given.
final class IntegrationTestService: Plugins_Integration.ServiceProtocol {
    let keys = Mutex<[String]>([])
    let ids = Mutex<[String]>([])

    func processLog(
        request: StreamingServerRequest<Plugins_Log>, context: ServerContext
    ) async throws -> StreamingServerResponse<Plugins_Ack> {
        keys.withLock { $0.append(contentsOf: request.metadata[stringValues: "connection-key"].map { String($0) }) }
        return StreamingServerResponse { writer in
            for try await log in request.messages {
                self.ids.withLock { $0.append(log.id) }
                var ack = Plugins_Ack()
                ack.lastID = log.id
                try await writer.write(ack)
            }
            return [:]
        }
    }
}

/// A CA and a server certificate for `utmstack.test`, made fresh for each run.
struct TestPKI {
    let caPEM: String
    let serverCertificatePEM: String
    let serverKeyPEM: String

    /// - Parameter names: the server certificate's names; by default utmstack.test and 127.0.0.1.
    init(names: [GeneralName]? = nil) throws {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("o365-gateway test CA") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 60, notValidAfter: now + 3600, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: .init(caKey))
        let serverKey = P256.Signing.PrivateKey()
        let server = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey),
            notValidBefore: now - 60, notValidAfter: now + 3600, issuer: caName,
            subject: try DistinguishedName { CommonName("utmstack.test") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // The name UTMStack is reached by, and this machine's address for the admin API over TLS.
                SubjectAlternativeNames(names ?? [.dnsName("utmstack.test"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: .init(caKey))
        caPEM = try ca.serializeAsPEM().pemString
        serverCertificatePEM = try server.serializeAsPEM().pemString
        serverKeyPEM = serverKey.pemRepresentation
    }
}

@Suite(.timeLimit(.minutes(2))) struct NetworkForwarderTests {
    @Test func logsReachTheNetworkServiceOverTLSWithTheConnectionKey() async throws {
        let pki = try TestPKI()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("o365gw-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let caFile = directory.appendingPathComponent("ca.pem").path
        try pki.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        let service = IntegrationTestService()
        let server = GRPCServer(
            transport: HTTP2ServerTransport.Posix(
                address: .ipv4(host: "127.0.0.1", port: 0),
                transportSecurity: .tls(
                    certificateChain: [.bytes(Array(pki.serverCertificatePEM.utf8), format: .pem)],
                    privateKey: .bytes(Array(pki.serverKeyPEM.utf8), format: .pem))),
            services: [service])
        let logs = syntheticLogs(0..<200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Cancelling stops accepting first, as EngineReceiver does: grpc-swift's server traps on a connection
            // accepted after its accept loop was cancelled (seen here when the untrusting forwarder reconnected).
            group.addTask {
                try await withTaskCancellationHandler {
                    try await server.serve()
                } onCancel: {
                    server.beginGracefulShutdown()
                }
            }
            defer { group.cancelAll() }
            let port = try #require(try await server.listeningAddress?.ipv4?.port)
            let key = Secret("federation-key-0123456789")
            func endpoint(_ ca: ForwarderConfiguration.CertificateAuthority?) -> ForwarderConfiguration {
                ForwarderConfiguration(
                    endpoint: .network(.init(host: "127.0.0.1", port: port, ca: ca, serverName: "utmstack.test",
                                             connectionKey: key)),
                    initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
            }
            try await withForwarder(endpoint(.file(caFile))) { forwarder in
                try await forwarder.deliver(Array(logs.prefix(100)))
            }
            // The CA as PEM, as a stored destination holds it.
            try await withForwarder(endpoint(.pem(pki.caPEM))) { forwarder in
                try await forwarder.deliver(Array(logs.dropFirst(100)))
            }
            #expect(service.ids.withLock { $0 } == logs.map(\.id))
            #expect(service.keys.withLock { $0 }.allSatisfy { $0 == key.unredacted })
            #expect(!service.keys.withLock { $0 }.isEmpty)

            // A gateway that does not trust the CA delivers nothing.
            let before = service.ids.withLock { $0.count }
            try await withForwarder(endpoint(nil)) { forwarder in
                _ = try await forwarder.submit(syntheticLogs(200..<210))
                try await Task.sleep(for: .milliseconds(700))
            }
            #expect(service.ids.withLock { $0.count } == before)
            // Its last connection attempt may still wait in the accept queue; the server traps on a connection
            // accepted but not yet served when it stops (apple/swift-nio#3481), so let that one be refused first.
            try await Task.sleep(for: .milliseconds(500))
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs the stand-in network service on an ephemeral port, over TLS with `pki`'s certificate (or plaintext).
    func withService(
        _ pki: TestPKI?, _ body: @Sendable (Int, IntegrationTestService) async throws -> Void
    ) async throws {
        let service = IntegrationTestService()
        let security: HTTP2ServerTransport.Posix.TransportSecurity = if let pki {
            .tls(
                certificateChain: [.bytes(Array(pki.serverCertificatePEM.utf8), format: .pem)],
                privateKey: .bytes(Array(pki.serverKeyPEM.utf8), format: .pem))
        } else {
            .plaintext
        }
        let server = GRPCServer(
            transport: HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: security),
            services: [service])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await server.serve()
                } onCancel: {
                    server.beginGracefulShutdown()
                }
            }
            defer { group.cancelAll() }
            let port = try #require(try await server.listeningAddress?.ipv4?.port)
            try await body(port, service)
            // See logsReachTheNetworkServiceOverTLSWithTheConnectionKey: let a last reconnection be refused first.
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    static func network(port: Int, ca: ForwarderConfiguration.CertificateAuthority?) -> ForwarderConfiguration {
        ForwarderConfiguration(
            endpoint: .network(.init(host: "127.0.0.1", port: port, ca: ca, serverName: "utmstack.test", connectionKey: Secret("federation-key-0123456789"))),
            initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
    }

    /// The configured CA file is read at each connection: replaced in place (UTMStack's certificate now signed by
    /// another CA), it is used from the next reconnection on, without a restart.
    @Test func aCAFileReplacedInPlaceIsReadAgainOnReconnect() async throws {
        let pki = try TestPKI()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("o365gw-ca-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let caFile = directory.appendingPathComponent("ca.pem").path
        try TestPKI().caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)  // another CA: not trusted
        try await withService(pki) { port, service in
            try await withForwarder(Self.network(port: port, ca: .file(caFile))) { forwarder in
                let ticket = try await forwarder.submit(syntheticLogs(0..<20))
                let refused = try await eventually(timeout: .seconds(10)) { await forwarder.health.lastFailure == .tlsHandshake }
                let seen = await forwarder.health.lastFailure
                #expect(refused, "the old CA does not verify the server: \(String(describing: seen))")
                #expect(service.ids.withLock { $0.isEmpty })
                try pki.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
                try await withTimeout(.seconds(15)) { try await forwarder.waitDelivered(ticket) }
                #expect(service.ids.withLock { $0.count } == 20)
            }
        }
    }

    /// `state.lastFailure` is one of a few fixed phrases: it tells neither the service behind a port nor the
    /// gateway's paths (an admin API caller could otherwise probe the network with destinations).
    @Test func failuresAreReportedInFixedWords() async throws {
        let missingSocket = "/tmp/o365gw-none/no-engine-here.sock"
        @Sendable func failure(_ configuration: ForwarderConfiguration) async throws -> (DestinationHealth.Failure?, String) {
            try await withForwarder(configuration) { forwarder in
                _ = try await forwarder.submit(syntheticLogs(0..<3))
                _ = try await eventually(timeout: .seconds(10)) { await forwarder.health.lastFailure != nil }
                return (await forwarder.health.lastFailure, await forwarder.unavailableError.message)
            }
        }
        let closed = try await failure(Self.network(port: 1, ca: nil))
        #expect(closed.0 == .unreachable)
        let socket = try await failure(ForwarderConfiguration(endpoint: .engineSocket(path: missingSocket), initialBackoff: .milliseconds(50)))
        #expect(socket.0 == .unreachable && !socket.1.contains("/tmp") && socket.1.contains("connection refused or unreachable"), "\(socket.1)")
        try await withService(nil) { port, _ in
            // A gRPC service without TLS: the handshake fails (the reason does not say what answered).
            let plaintext = try await failure(Self.network(port: port, ca: nil))
            #expect(plaintext.0 == .tlsHandshake, "\(String(describing: plaintext.0))")
            #expect(!plaintext.1.contains("\(port)"), "\(plaintext.1)")
        }
    }
}
