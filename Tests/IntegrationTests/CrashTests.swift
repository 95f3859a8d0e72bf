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

#if canImport(Glibc)
import Glibc
#endif

/// The real `o365-gateway serve` process, killed with SIGKILL mid-backfill and started again.
extension EndToEndTests {
    @Suite(.timeLimit(.minutes(4))) struct CrashTests {
        @Test func aGatewayKilledMidWayResumesWithinTheLeaseTimeLosingNothing() async throws {
            var simulated = SimulatorConfiguration.generated(tenants: 3, seed: 91)
            simulated.historyHours = 1
            simulated.blobIntervalSeconds = 60
            simulated.recordsPerBlob = 10
            simulated.pageSize = 50
            simulated.duplicateFraction = 0.2
            simulated.lateFraction = 0
            simulated.latencySeconds = 0
            simulated.live = false
            let socket = temporarySocketPath()
            let received = ReceivedLogs(keepLogs: true)
            let database = try await TestDatabase.create("crash")
            let keySpec = "k1:\(Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString())"
            let keyRing = try KeyRing(parsing: Secret(keySpec))
            _ = try await Gateway.migrate(database, logger: quietLogger)
            try await withSimulator(simulated) { simulator, url in
                try await Gateway.onboard(simulator.configuration.tenants, database: database, keyRing: keyRing, logger: quietLogger)
                let expected = expectedRecordIDs(simulator, now: Date() - 61)
                #expect(expected.count > 4000)
                try await withReceiver(path: socket, received: received) {
                    let environment = [
                        "O365GW_DATABASE_URL": try TestDatabase.urlString(database), "O365GW_ENCRYPTION_KEYS": keySpec,
                        "O365GW_ADMIN_TOKEN": "crash-test-admin-token-1234567890", "O365GW_LISTEN": "127.0.0.1:0",
                        "O365GW_UTMSTACK_SOCKET": socket, "O365GW_LOGIN_URL": url.absoluteString,
                        "O365GW_MANAGE_URL": url.absoluteString, "O365GW_GRAPH_URL": url.absoluteString,
                        "O365GW_POLL_INTERVAL_SECONDS": "1", "O365GW_BACKFILL_HOURS": "2",
                        "O365GW_REQUESTS_PER_MINUTE": "60000", "O365GW_LOG_LEVEL": "warning",
                    ]
                    // Default lease TTL (20 s) and tick (5 s): the restarted process must wait for the dead one's leases.
                    let first = try Executable.start(["serve"], environment: environment)
                    let midway = try await eventually(timeout: .seconds(90)) { received.total >= expected.count / 4 }
                    try #require(midway, "the first process forwarded a quarter (\(received.total) of \(expected.count)): \(first.outputTail)")
                    first.kill()
                    // What the receiver had read from the dead connection by now was sent before the kill.
                    try await Task.sleep(for: .milliseconds(300))
                    let atKill = received.recordIDs
                    #expect(atKill.count < expected.count, "killed before the end")
                    let killedAt = ContinuousClock.now
                    let second = try Executable.start(["serve"], environment: environment)
                    defer { second.terminate() }
                    let resumed = try await eventually(timeout: .seconds(40)) { received.total > atKill.count }
                    let resumedAfter = ContinuousClock.now - killedAt
                    #expect(resumed && resumedAfter < .seconds(30), "collection resumed after \(resumedAfter)")
                    let complete = try await eventually(timeout: .seconds(120)) { expected.isSubset(of: Set(received.recordIDs)) }
                    #expect(complete, "nothing lost: \(expected.subtracting(received.recordIDs).count) missing; \(second.outputTail)")
                    // Only what was in flight at the kill (sent, or acknowledged but not yet committed) may come twice.
                    let ids = received.recordIDs
                    var seen = Set<String>(), repeated = Set<String>()
                    for id in ids where !seen.insert(id).inserted { repeated.insert(id) }
                    #expect(repeated.isSubset(of: Set(atKill)), "a repeat is always of a record sent before the kill")
                    // Each unit keeps at most blobConcurrency (4) blobs forwarded but not remembered, plus the one at hand.
                    let inFlightBound = 15 * 5 * 11
                    #expect(repeated.count <= inFlightBound, "\(repeated.count) records re-forwarded after the kill")
                    print("crash test: \(atKill.count) records before the kill, resumed after \(resumedAfter), \(repeated.count) re-forwarded of \(expected.count)")
                    #expect(Set(ids).isSubset(of: expectedRecordIDs(simulator)))
                }
            }
        }
}
}

extension Executable {
    /// A running gateway process; its output goes to a file (read it when a test fails).
    final class Running: Sendable {
        let process: Process
        let log: URL

        init(process: Process, log: URL) {
            self.process = process
            self.log = log
        }

        /// SIGKILL: no graceful shutdown, no final commit, no lease release.
        func kill() {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        /// The end of the process's output, for failure messages.
        var outputTail: String { String(((try? String(contentsOf: log, encoding: .utf8)) ?? "").suffix(2000)) }

        func terminate() {
            guard process.isRunning else { return }
            process.terminate()
            process.waitUntilExit()
        }
    }

    static func start(_ arguments: [String], environment: [String: String]) throws -> Running {
        let process = process(arguments, environment: environment)
        let log = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("o365gw-\(UUID().uuidString.prefix(8)).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return Running(process: process, log: log)
    }
}
