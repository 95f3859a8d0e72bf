import AsyncHTTPClient
import CredentialCrypto
import DevTools
import Foundation
import GatewayApp
import GatewayCore
import Logging
import MicrosoftSimulator
import PostgresStorage
import Testing
import UTMStackReceiver

/// The real `o365-gateway serve` process while its peers hang: the UTMStack engine frozen and replaced, PostgreSQL
/// restarted and then frozen for 30 seconds. It recovers by itself and loses nothing.
extension EndToEndTests {
    @Suite(.timeLimit(.minutes(5))) struct ProcessFailureTests {
        static func keySpec() -> String {
            "k1:\(Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())"
        }

        static func environment(database: String, keys: String, simulator: URL, socket: String, listen: String) -> [String: String] {
            [
                "O365GW_DATABASE_URL": database, "O365GW_ENCRYPTION_KEYS": keys,
                "O365GW_ADMIN_TOKEN": "process-test-admin-token-123456", "O365GW_LISTEN": listen,
                "O365GW_UTMSTACK_SOCKET": socket, "O365GW_LOGIN_URL": simulator.absoluteString,
                "O365GW_MANAGE_URL": simulator.absoluteString, "O365GW_GRAPH_URL": simulator.absoluteString,
                "O365GW_POLL_INTERVAL_SECONDS": "1", "O365GW_BACKFILL_HOURS": "2", "O365GW_REQUESTS_PER_MINUTE": "60000",
                "O365GW_LOG_LEVEL": "warning",
            ]
        }

        /// The reported failure, end to end: the engine is frozen (SIGSTOP) mid-collection and a new one started on
        /// the same socket. Before, nothing reached the new engine for as long as the frozen one lived; now the
        /// frozen connection is given up within the acknowledgement deadline and every record arrives.
        @Test func aFrozenEngineReplacedByANewOneGetsEverything() async throws {
            var simulated = SimulatorConfiguration.steady(tenants: 3, seed: 83, history: 1, interval: 60, records: 10)
            simulated.pageSize = 50
            let socket = temporarySocketPath()
            let database = try await TestDatabase.create("frozen")
            let keys = Self.keySpec()
            _ = try await Gateway.migrate(database, logger: quietLogger)
            try await withSimulator(simulated) { simulator, url in
                try await Gateway.onboard(
                    simulator.configuration.tenants, database: database, keyRing: try KeyRing(parsing: Secret(keys)), logger: quietLogger)
                let expected = expectedRecordIDs(simulator, now: Date() - 61)
                // Slow to acknowledge, so that the freeze happens mid-collection.
                let first = try await GoEngine.start(socket: socket, ["-ack-delay", "1ms"])
                defer { first.stop() }
                var environment = Self.environment(
                    database: try TestDatabase.urlString(database), keys: keys, simulator: url, socket: socket, listen: "127.0.0.1:0")
                environment["O365GW_UTMSTACK_ACK_TIMEOUT_SECONDS"] = "5"
                environment["O365GW_UTMSTACK_KEEPALIVE_SECONDS"] = "2"
                let gateway = try Executable.start(["serve"], environment: environment)
                defer { gateway.terminate() }
                let midway = try await eventually(timeout: .seconds(60)) { first.logIDs.count >= expected.count / 4 }
                try #require(midway, "a quarter collected before the freeze: \(gateway.outputTail)")
                first.freeze()
                try await Task.sleep(for: .seconds(1))
                let atFreeze = Set(first.lines.map(\.recordID))
                let second = try await GoEngine.start(socket: socket)
                defer { second.stop() }
                let replaced = ContinuousClock.now
                let resumed = try await eventually(timeout: .seconds(30)) { !second.logIDs.isEmpty }
                let after = ContinuousClock.now - replaced
                #expect(resumed && after < .seconds(12), "the new engine got its first log \(after) after it started (deadline 5 s, keepalive 2 s)")
                let complete = try await eventually(timeout: .seconds(120)) {
                    atFreeze.union(second.lines.map(\.recordID)).isSuperset(of: expected)
                }
                #expect(complete, "nothing lost: \(expected.subtracting(atFreeze.union(second.lines.map(\.recordID))).count) missing; \(gateway.outputTail)")
                // Only what the frozen engine had taken without its acknowledgement getting out may come twice.
                let twice = atFreeze.intersection(second.lines.map(\.recordID))
                #expect(twice.count <= 4096, "\(twice.count) records arrived twice")
                print("frozen engine: \(atFreeze.count) records before the freeze, the new engine's first log \(after) after it started, \(twice.count) twice, of \(expected.count)")
            }
        }

        /// PostgreSQL restarted, then frozen for 30 seconds (SIGSTOP: its connections stay open, nothing answers),
        /// during collection. The gateway keeps running, reports not ready while it cannot reach the database (with a
        /// generic reason), holds no transaction open past its timeout, recovers by itself and loses nothing.
        @Test func postgresRestartedAndFrozenMidCollection() async throws {
            let simulated = SimulatorConfiguration.steady(tenants: 2, seed: 89, history: 0.05, interval: 2, records: 5, live: true)
            let postgres = try LocalPostgres(logger: quietLogger)
            defer { postgres.stop() }
            let database = try postgres.databaseURL
            let keys = Self.keySpec()
            _ = try await Gateway.migrate(database, logger: quietLogger)
            let socket = temporarySocketPath()
            let received = ReceivedLogs(keepLogs: true)
            let port = LocalPostgres.freePort()
            let readyz = "http://127.0.0.1:\(port)/readyz"
            try await withSimulator(simulated) { simulator, url in
                try await Gateway.onboard(
                    simulator.configuration.tenants, database: database, keyRing: try KeyRing(parsing: Secret(keys)), logger: quietLogger)
                try await withReceiver(path: socket, received: received) {
                    var environment = Self.environment(
                        database: "postgres://postgres@127.0.0.1:\(postgres.port)/postgres?sslmode=disable", keys: keys,
                        simulator: url, socket: socket, listen: "127.0.0.1:\(port)")
                    environment["O365GW_DATABASE_TIMEOUT_SECONDS"] = "3"
                    let gateway = try Executable.start(["serve"], environment: environment)
                    defer { gateway.terminate() }
                    let started = try await eventually(timeout: .seconds(60)) { received.total > 100 }
                    try #require(started, "\(gateway.outputTail)")

                    // A restart (fast shutdown ends every session).
                    try postgres.restart()
                    let atRestart = received.total
                    let afterRestart = try await eventually(timeout: .seconds(40)) { received.total > atRestart + 50 }
                    #expect(afterRestart, "collection goes on after the restart: \(gateway.outputTail)")

                    // A 30-second freeze.
                    postgres.freeze()
                    let frozenAt = ContinuousClock.now
                    try await Task.sleep(for: .seconds(8))
                    let (status, body) = try await Self.get(readyz)
                    #expect(status == 503 && body.contains("the database does not answer"), "\(status) \(body)")
                    #expect(!body.contains("PSQL") && !body.contains("Error"), "a generic reason: \(body)")
                    try await Task.sleep(until: frozenAt + .seconds(30))
                    postgres.thaw()
                    #expect(gateway.process.isRunning, "the gateway survived the freeze")

                    // No session of the gateway holds a transaction (and its row locks) past the timeout.
                    try await Task.sleep(for: .seconds(5))
                    for _ in 0..<5 {
                        let long = try await Gateway.withDatabase(database, logger: quietLogger) { db in
                            try await db.query(
                                """
                                SELECT count(*) FROM pg_stat_activity WHERE application_name = 'o365-gateway'
                                AND xact_start < now() - interval '10 seconds'
                                """).decode(Int.self).first ?? -1
                        }
                        #expect(long == 0, "\(long) gateway transactions older than 10 s")
                        try await Task.sleep(for: .seconds(1))
                    }
                    let ready = try await eventually(timeout: .seconds(40)) { (try? await Self.get(readyz))?.0 == 200 }
                    #expect(ready, "ready again")
                    let complete = try await eventually(timeout: .seconds(90)) {
                        Set(received.recordIDs).isSuperset(of: expectedRecordIDs(simulator, now: Date() - 62))
                    }
                    let missing = expectedRecordIDs(simulator, now: Date() - 62).subtracting(received.recordIDs)
                    #expect(complete, "nothing lost: \(missing.count) missing; \(gateway.outputTail)")
                    let ids = received.recordIDs
                    print("postgres restart and freeze: \(ids.count) logs, \(ids.count - Set(ids).count) twice")
                }
            }
        }

        static func get(_ url: String) async throws -> (Int, String) {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 16)
            return (Int(response.status.code), String(buffer: body))
        }
    }
}
