import Foundation
import GatewayCore
import Hummingbird
import MicrosoftSimulator
import Synchronization
import Testing

/// `o365-gateway tenants ...`, the real executable against a running gateway's admin API.
@Suite(.timeLimit(.minutes(3))) struct TenantsCLITests {
    @Test func onboardListShowUpdateRotateValidateDeleteFromTheShell() async throws {
        let simulated = SimulatorConfiguration.generated(tenants: 1, seed: 97)
        try await withSimulator(simulated) { simulator, url in
            try await GatewayHarness.run(microsoft: url) { gw in
                let env = ["O365GW_ADMIN_URL": gw.baseURL, "O365GW_ADMIN_TOKEN": gw.token.unredacted]
                let tenant = simulator.configuration.tenants[0]
                let secret = tenant.clientSecret!
                let added = try await Executable.runAside(
                    ["tenants", "add", "--name", "Contoso", "--tenant-id", tenant.tenantId.uuidString,
                     "--client-id", tenant.clientId.uuidString, "--secret-file", "-", "--content-types", "Audit.Exchange,DLP.All"],
                    environment: env, input: secret + "\n")
                #expect(added.status == 0, "\(added.stderr)")
                #expect(!added.stdout.contains(secret) && !added.stderr.contains(secret), "a secret is never echoed")
                let id = try #require(added.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })

                let list = try await Executable.runAside(["tenants", "list"], environment: env)
                #expect(list.status == 0 && list.stdout.hasPrefix("ID") && list.stdout.contains("Contoso"), "\(list.stdout)")
                let json = try await Executable.runAside(["tenants", "list", "--output", "json"], environment: env)
                let items = try #require((try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [[String: Any]])
                #expect(items.first?["id"] as? String == id && items.first?["contentTypes"] as? [String] == ["Audit.Exchange", "DLP.All"])

                let show = try await Executable.runAside(["tenants", "show", id], environment: env)
                #expect(show.status == 0 && show.stdout.contains("name") && show.stdout.contains("Contoso"), "\(show.stdout)")

                let paused = try await Executable.runAside(["tenants", "update", id, "--disable-collection", "--name", "Contoso Ltd"], environment: env)
                #expect(paused.status == 0 && paused.stdout.contains("Contoso Ltd"), "\(paused.stderr)")
                let stale = try await Executable.runAside(["tenants", "update", id, "--enable-collection", "--if-match", "\"1\""], environment: env)
                #expect(stale.status == 3 && stale.stderr.contains("version_mismatch"), "an API refusal exits 3: \(stale.stderr)")

                let secretFile = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
                try secret.write(toFile: secretFile, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(atPath: secretFile) }
                let rotated = try await Executable.runAside(
                    ["tenants", "rotate-secret", id, "--secret-file", secretFile, "--secret-expires-at", "2028-01-01T00:00:00Z"],
                    environment: env)
                #expect(rotated.status == 0 && rotated.stdout.contains("2028-01-01"), "\(rotated.stderr)")

                let validated = try await Executable.runAside(["tenants", "validate", id], environment: env)
                #expect(validated.status == 0 && validated.stdout.contains("token"), "\(validated.stdout) \(validated.stderr)")

                let missing = try await Executable.runAside(["tenants", "show", UUID().uuidString], environment: env)
                #expect(missing.status == 3 && missing.stderr.contains("tenant_not_found"))
                let deleted = try await Executable.runAside(["tenants", "delete", id], environment: env)
                #expect(deleted.status == 0)
                let gone = try await Executable.runAside(["tenants", "show", id], environment: env)
                #expect(gone.status == 3)
            }
        }
    }

    @Test func exitCodesTellUsageErrorsFromUnreachableGateways() async throws {
        let unreachable = try await Executable.runAside(
            ["tenants", "list"], environment: ["O365GW_ADMIN_URL": "http://127.0.0.1:1", "O365GW_ADMIN_TOKEN": "t"])
        #expect(unreachable.status == 4 && unreachable.stderr.contains("could not be reached"))
        let noToken = try await Executable.runAside(["tenants", "list"], environment: ["O365GW_ADMIN_URL": "http://127.0.0.1:1"])
        #expect(noToken.status == 64 && noToken.stderr.contains("O365GW_ADMIN_TOKEN"))
        let noSecret = try await Executable.runAside(
            ["tenants", "add", "--name", "x", "--tenant-id", UUID().uuidString, "--client-id", UUID().uuidString],
            environment: ["O365GW_ADMIN_TOKEN": "t"])
        #expect(noSecret.status == 64 && noSecret.stderr.contains("--secret-file"))
        let help = try await Executable.runAside(["tenants", "--help"])
        #expect(help.status == 0 && help.stdout.contains("import-utmstack"))
    }

    /// A 307 or 308 would replay the body (a customer's secret) to another origin, and an https-to-http one would send
    /// the token in the clear: the CLI follows no redirect. It fails, naming where the redirect pointed, never the
    /// user name and password in it, and the other listener hears nothing.
    @Test(arguments: [307, 308]) func neverFollowsARedirect(status: Int) async throws {
        let secret = "redirect-probe-client-secret-0123456789"
        try await withRecordingListener { elsewhere, elsewherePort in
            let location = "http://admin:location-password-42@127.0.0.1:\(elsewherePort)/api/v1/tenants"
            try await withRecordingListener(answer: (status, location)) { gateway, gatewayPort in
                let env = ["O365GW_ADMIN_URL": "http://127.0.0.1:\(gatewayPort)", "O365GW_ADMIN_TOKEN": "redirect-probe-admin-token"]
                let added = try await Executable.runAside(
                    ["tenants", "add", "--name", "Contoso", "--tenant-id", UUID().uuidString, "--client-id", UUID().uuidString,
                     "--secret-file", "-"],
                    environment: env, input: secret)
                #expect(added.status == 4, "\(added.stdout) \(added.stderr)")
                #expect(added.stderr.contains("HTTP \(status)") && added.stderr.contains("http://127.0.0.1:\(elsewherePort)"), "\(added.stderr)")
                let listed = try await Executable.runAside(["tenants", "list"], environment: env)
                #expect(listed.status == 4, "\(listed.stdout) \(listed.stderr)")
                for output in [added.stdout, added.stderr, listed.stdout, listed.stderr] {
                    #expect(!output.contains("location-password-42") && !output.contains("admin:") && !output.contains(secret))
                }
                #expect(gateway.requests.count == 2, "the gateway asked was asked once per command")
                #expect(elsewhere.requests.isEmpty, "the redirect's target got \(elsewhere.requests.map(\.description))")
            }
        }
    }

    /// The token goes with every command: plain http to another machine is refused before any connection (a usage
    /// error, not "could not be reached") unless --insecure; a user name and password in the URL are refused unshown.
    @Test func plainHTTPBeyondThisMachineAndPasswordsInTheURLAreRefused() async throws {
        let token = ["O365GW_ADMIN_TOKEN": "insecure-probe-admin-token"]
        let byVariable = try await Executable.runAside(
            ["tenants", "list"], environment: token.merging(["O365GW_ADMIN_URL": "http://127.example.com:8080"]) { $1 })
        #expect(byVariable.status == 64 && byVariable.stderr.contains("O365GW_ADMIN_URL is plain http://"), "\(byVariable.stderr)")
        let withPassword = try await Executable.runAside(
            ["tenants", "list", "--url", "https://admin:url-password-42@gateway.example:8443"], environment: token)
        #expect(withPassword.status == 64 && withPassword.stderr.contains("user name or password"), "\(withPassword.stderr)")
        #expect(!withPassword.stderr.contains("url-password-42") && !withPassword.stdout.contains("url-password-42"))
        // This machine's own address beyond loopback (the listener answers on every address): refused without
        // --insecure, so the listener hears nothing; let through with it, with a warning.
        let address = try #require(nonLoopbackIPv4(), "this machine has no IPv4 address beyond loopback")
        try await withRecordingListener(host: "0.0.0.0") { listener, port in
            let refused = try await Executable.runAside(["tenants", "list", "--url", "http://\(address):\(port)"], environment: token)
            #expect(refused.status == 64 && refused.stderr.contains("--url is plain http:// to \(address)") && refused.stderr.contains("--insecure"), "\(refused.stderr)")
            #expect(listener.requests.isEmpty, "refused before any connection")
            let insecure = try await Executable.runAside(
                ["tenants", "list", "--url", "http://\(address):\(port)", "--insecure"], environment: token)
            #expect(insecure.status == 0 && insecure.stderr.contains("warning: --insecure"), "\(insecure.stderr)")
            #expect(listener.requests.count == 1)
            // Loopback in all its forms needs no flag.
            for host in ["127.0.0.1", "localhost"] {
                let local = try await Executable.runAside(["tenants", "list", "--url", "http://\(host):\(port)"], environment: token)
                #expect(local.status == 0 && !local.stderr.contains("warning"), "\(host): \(local.stderr)")
            }
            #expect(listener.requests.count == 3)
        }
    }

    /// UTMStack's own Office 365 integration, imported twice: the second run changes nothing and duplicates nothing.
    @Test func importFromUTMStackIsIdempotent() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("system_plugins_o365-\(UUID().uuidString).yaml").path
        let tenantA = UUID().uuidString.lowercased(), tenantB = UUID().uuidString.lowercased()
        try """
            plugins:
              o365:
                tenants:
                  - id: 7d3c0c52-0000-4000-8000-00000000000a
                    groups:
                      - name: Contoso
                        config:
                          office365_tenant_id: \(tenantA)
                          office365_client_id: 0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9
                          office365_client_secret: contoso~secret.value_0123456789
                          office365_cloud_environment: GCC
                      - name: Fabrikam
                        config:
                          office365_tenant_id: \(tenantB)
                          office365_client_id: 1b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9
                          office365_client_secret: fabrikam~secret.value_0123456789
                      - name: Broken
                        config:
                          office365_tenant_id: nope
            """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await GatewayHarness.run { gw in
            let env = ["O365GW_ADMIN_URL": gw.baseURL, "O365GW_ADMIN_TOKEN": gw.token.unredacted]
            let dry = try await Executable.runAside(["tenants", "import-utmstack", file, "--dry-run"], environment: env)
            #expect(dry.status == 0 && dry.stdout.contains("would be onboarded") && dry.stdout.contains("skipped"), "\(dry.stdout) \(dry.stderr)")
            #expect(try await gw.request(.GET, "/api/v1/tenants").json["items"].map { ($0 as? [Any])?.count } == 0, "a dry run changes nothing")
            let first = try await Executable.runAside(["tenants", "import-utmstack", file], environment: env)
            #expect(first.status == 0 && first.stdout.components(separatedBy: "created").count - 1 == 2, "\(first.stdout) \(first.stderr)")
            #expect(!first.stdout.contains("secret.value"))
            let second = try await Executable.runAside(["tenants", "import-utmstack", file, "--output", "json"], environment: env)
            let results = ((try? JSONSerialization.jsonObject(with: Data(second.stdout.utf8))) as? [String: Any])?["results"] as? [[String: String]]
            #expect(results?.map { $0["outcome"] } == ["unchanged", "unchanged", "skipped"], "\(second.stdout)")
            let items = try #require(try await gw.request(.GET, "/api/v1/tenants").json["items"] as? [[String: Any]])
            #expect(items.count == 2)
            let contoso = try #require(items.first { $0["name"] as? String == "Contoso" })
            #expect(contoso["cloud"] as? String == "gcc" && contoso["dataSource"] as? String == "Contoso")
            #expect(contoso["utmTenantId"] as? String == "7d3c0c52-0000-4000-8000-00000000000a")
        }
    }
}

/// A request as a ``RecordingListener`` received it.
struct RecordedRequest: Sendable, CustomStringConvertible {
    var method: String
    var path: String
    var authorization: String?
    var body: String
    var description: String { "\(method) \(path) authorization=\(authorization != nil) body=\(body.count) bytes" }
}

/// An HTTP listener on a loopback port that records every request and answers each one alike.
final class RecordingListener: Sendable {
    private let received = Mutex<[RecordedRequest]>([])
    var requests: [RecordedRequest] { received.withLock { $0 } }
    fileprivate func record(_ request: RecordedRequest) { received.withLock { $0.append(request) } }
}

/// Runs `body` with a ``RecordingListener`` and its port. It answers `answer` (a status and a Location), or 200
/// with an empty tenant list.
func withRecordingListener<R: Sendable>(
    host: String = "127.0.0.1", answer: (status: Int, location: String)? = nil,
    _ body: @escaping @Sendable (RecordingListener, Int) async throws -> R
) async throws -> R {
    let listener = RecordingListener()
    let router = Router()
    for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete] {
        router.on("**", method: method) { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            listener.record(RecordedRequest(
                method: request.method.rawValue, path: request.uri.path, authorization: request.headers[.authorization],
                body: String(buffer: buffer)))
            guard let answer else {
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"items": []}"#)))
            }
            return Response(status: .init(code: answer.status), headers: [.location: answer.location])
        }
    }
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let app = Application(
        router: router, configuration: .init(address: .hostname(host, port: 0)),
        onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: quietLogger)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await app.runService(gracefulShutdownSignals: []); return nil }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        group.addTask { try await body(listener, port) }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}

/// An IPv4 address of this machine beyond 127.0.0.0/8, if it has one.
func nonLoopbackIPv4() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return nil }
    defer { freeifaddrs(list) }
    var entry = list
    while let current = entry {
        defer { entry = current.pointee.ifa_next }
        guard let address = current.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let found = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { ipv4 -> String? in
            var bytes = ipv4.pointee.sin_addr
            guard inet_ntop(AF_INET, &bytes, &text, socklen_t(INET_ADDRSTRLEN)) != nil else { return nil }
            return String(cString: text)
        }
        if let found, !Loopback.contains(host: found) { return found }
    }
    return nil
}
