import Foundation
import GatewayCore
import Testing

/// Onboards and rotates with known secrets (and sends them in rejected requests too), then searches the
/// gateway's own log output at trace level and a pg_dump of its database: neither may contain them.
@Suite(.timeLimit(.minutes(2))) struct SecretLeakTests {
    @Test func secretsAppearNeitherInLogsNorInTheDatabase() async throws {
        let logs = LogCapture()
        let first = "Leak~probe.FIRST_0123456789abcdefghijk"
        let second = "Leak~probe.SECOND_0123456789abcdefghij"
        let (dump, token) = try await GatewayHarness.run(logs: logs) { gw in
            let created = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(secret: first))
            #expect(created.status == 201)
            let id = try #require(created.json["id"] as? String)
            let rotated = try await gw.request(
                .PUT, "/api/v1/tenants/\(id)/secret", json: #"{"clientSecret": "\#(second)"}"#)
            #expect(rotated.status == 200)
            // Rejected requests that carry the secret: unknown field, duplicate tenant, wrong token.
            _ = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(secret: first, ["extra": first]))
            _ = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(secret: first, ["name": 7]))
            _ = try await gw.request(.GET, "/api/v1/tenants", auth: .token("Bearer \(first)"))
            _ = try await gw.request(
                .PUT, "/api/v1/tenants/\(id)/secret", json: #"{"clientSecret": "\#(first)", "x": 1}"#)
            _ = try await gw.request(.GET, "/api/v1/tenants")
            return (try pgDump(gw.database.urlForTools), gw.token.unredacted)
        }
        let log = logs.text
        #expect(log.contains("tenant onboarded"), "the capture must see the gateway's log")
        #expect(dump.contains("COPY public.tenants"), "the dump must hold the tenants table")
        for secret in [first, second, token] {
            #expect(!log.contains(secret), "a secret is in the log")
            #expect(!dump.contains(secret), "a secret is in the database dump")
        }
    }
}

/// A statement PostgreSQL refuses on a constraint is logged by its SQLSTATE and constraint only: PostgreSQL's
/// DETAIL ("Failing row contains (...)") quotes the row, the sealed credential among its values.
@Suite(.timeLimit(.minutes(2))) struct ConstraintViolationLogTests {
    @Test func aConstraintViolationLogsNoRowValue() async throws {
        let logs = LogCapture()
        let tenantID = UUID().uuidString.lowercased()
        try await GatewayHarness.run(logs: logs) { gw in
            // A constraint the gateway's own checks do not know, so the insert reaches PostgreSQL and fails there.
            try await TestDatabase.withClient(gw.database) { database in
                try await database.query("ALTER TABLE tenants ADD CONSTRAINT leak_probe CHECK (name <> 'Constraint Probe')")
            }
            let refused = try await gw.request(.POST, "/api/v1/tenants", json: tenantBody(tenantId: tenantID, ["name": "Constraint Probe"]))
            #expect(refused.status == 500 && refused.errorCode == "internal_error")
            #expect(!refused.body.contains(tenantID))
        }
        let log = logs.text
        #expect(log.contains("leak_probe") && log.contains("23514"), "the log names the constraint and the SQLSTATE: \(log.suffix(2000))")
        for value in [tenantID, "Constraint Probe", "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "Failing row", "\\x"] {
            #expect(!log.contains(value), "a row value (\(value)) is in the log")
        }
    }
}

/// Runs pg_dump (data and schema) of `url` and returns its text.
func pgDump(_ url: String) throws -> String {
    let candidates = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
        .compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin/pg_dump" }
    guard let tool = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
        throw GatewayError(.unavailable, code: "pg_dump_missing", "pg_dump not found under /usr/lib/postgresql")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = ["--dbname=\(url)"]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    return String(decoding: data, as: UTF8.self)
}

import PostgresStorage

extension DatabaseURL {
    /// A libpq URL for command-line tools (the test cluster trusts local connections, so no password).
    var urlForTools: String { "postgresql://\(username)@\(host):\(port)/\(database)" }
}
