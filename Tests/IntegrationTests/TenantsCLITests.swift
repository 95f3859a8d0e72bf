import Foundation
import GatewayCore
import MicrosoftSimulator
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
