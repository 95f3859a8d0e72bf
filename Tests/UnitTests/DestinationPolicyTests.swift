import CredentialCrypto
import Foundation
import Testing

@testable import AdminAPI
@testable import GatewayCore

/// Where stored destinations may point, and what a change of one needs (docs/destinations.md).
@Suite struct DestinationPolicyTests {
    let policy = DestinationPolicy(socketDirectories: ["/workdir/sockets/", "/run/utmstack"])

    /// A symbolic link in an allowed directory would lead the connection out of it: refused.
    @Test func aSymbolicLinkIsNotASocketOfTheDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/link.sock", withDestinationPath: "/var/run/docker.sock")
        let policy = DestinationPolicy(socketDirectories: [directory])
        try policy.check(.socket(path: directory + "/engine.sock"))
        let error = #expect(throws: GatewayError.self) { try policy.check(.socket(path: directory + "/link.sock")) }
        #expect(error?.code == "socket_path_not_allowed")
    }

    @Test func socketsOnlyInsideTheAllowedDirectories() throws {
        for allowed in ["/workdir/sockets/engine.sock", "/run/utmstack/x.sock"] {
            try policy.check(.socket(path: allowed))
        }
        for refused in [
            "/workdir/sockets", "/workdir/socketsX/engine.sock", "/workdir/sockets/eu/engine.sock", "/var/run/docker.sock", "/workdir/sockets/../../etc/x.sock",
            "/workdir/sockets/./engine.sock", "/workdir/sockets//engine.sock", "/run/postgresql/.s.PGSQL.5432",
        ] {
            let error = #expect(throws: GatewayError.self, "\(refused)") { try policy.check(.socket(path: refused)) }
            #expect(error?.code == "socket_path_not_allowed" && error?.kind == .invalidInput, "\(refused)")
        }
        #expect(DestinationPolicy.defaultFor(socket: "/workdir/sockets/engine_server.sock").socketDirectories == ["/workdir/sockets"])
        #expect(DestinationPolicy.defaultFor(socket: "/engine.sock").socketDirectories == ["/"])
    }

    @Test func hostsAndPortsOnlyAsTheOperatorAllows() throws {
        try policy.check(.network(host: "10.0.0.7", port: 22, serverName: nil, caPEM: nil))  // unset: any
        let patterns = try ["utm.example.net:9000", "*.customers.example.net", "[fd00::1]:50051", "10.1.2.3:*"].map {
            try #require(HostPattern(parsing: $0), "\($0)")
        }
        let restricted = DestinationPolicy(socketDirectories: ["/s"], allowedHosts: patterns)
        for (host, port) in [("utm.example.net", 9000), ("UTM.example.net.", 9000), ("a.customers.example.net", 1), ("fd00::1", 50051), ("10.1.2.3", 443)] {
            try restricted.check(.network(host: host, port: port, serverName: nil, caPEM: nil))
        }
        for (host, port) in [("utm.example.net", 22), ("customers.example.net", 443), ("evilcustomers.example.net", 443), ("fd00::1", 1), ("127.0.0.1", 5432)] {
            let error = #expect(throws: GatewayError.self, "\(host):\(port)") {
                try restricted.check(.network(host: host, port: port, serverName: nil, caPEM: nil))
            }
            #expect(error?.code == "host_not_allowed", "\(host):\(port)")
        }
        for bad in ["", "a:b", "*x.example.net", "a.*.net", "::1", "[::1", "host:0", "host:70000", "a b"] {
            #expect(HostPattern(parsing: bad) == nil, "\(bad)")
        }
        #expect(HostPattern(parsing: "*")?.matches(host: "anything", port: 1) == true)
    }

    /// A key is bound to its endpoint: a new host drops the old server name (the new host is verified under its own
    /// name), and `connection_key_required` names what needs the key again.
    @Test func aNewHostIsVerifiedUnderItsOwnName() throws {
        let current = Destination.Endpoint.network(host: "old.example.net", port: 9000, serverName: "utm.internal", caPEM: nil)
        #expect(try DestinationChanges(host: "new.example.net").applied(to: current)
            == .network(host: "new.example.net", port: 9000, serverName: nil, caPEM: nil))
        #expect(try DestinationChanges(host: "new.example.net", serverName: "n").applied(to: current)
            == .network(host: "new.example.net", port: 9000, serverName: "n", caPEM: nil))
        #expect(try DestinationChanges(port: 1).applied(to: current)
            == .network(host: "old.example.net", port: 1, serverName: "utm.internal", caPEM: nil))
        #expect(DestinationSettings.connectionKeyRequired().code == "connection_key_required")
        #expect(throws: GatewayError.self) { try DestinationSettings.checkKey(Secret("key\u{0}with-nul")) }
    }

    /// The positive case (a real CA) is NetworkForwarderTests' and DestinationsTests'.
    @Test func aCAMustBeCertificatesAndNothingElse() throws {
        for bad in [
            "not a certificate", "", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----",
        ] {
            let error = #expect(throws: GatewayError.self, "\(bad.prefix(20))") { try TrustAnchors.check(bad) }
            #expect(error?.code == "invalid_ca_pem" && error?.kind == .invalidInput && error?.message.hasPrefix("caPem:") == true)
            #expect(error.map { !$0.message.contains("MC4CAQ") } ?? false, "never quoted")
        }
    }

    /// `state.lastFailure`'s words are the OpenAPI document's enum, one for one.
    @Test func theFailureWordsAreTheDocumentsEnum() {
        #expect(Set(DestinationHealth.Failure.allCases.map(\.rawValue))
            == Set(Components.Schemas.DestinationState.LastFailurePayload.allCases.map(\.rawValue)))
    }
}
