import Foundation
import GatewayCore
import PostgresStorage
import Testing

/// The deadlines of `Database` against a real server: no wait on PostgreSQL outlives its timeout, and a statement
/// on a connection that closed fails instead of waiting for ever.
@Suite(.timeLimit(.minutes(1))) struct DatabaseTests {
    @Test func aStatementOutlivingTheDeadlineIsGivenUp() async throws {
        let db = try await TestDatabase.create("deadline")
        try await TestDatabase.withClient(db) { database in
            let started = ContinuousClock.now
            await #expect {
                try await database.withConnection(timeout: .seconds(1)) { connection in
                    // The server's own timeout lifted: only the client's deadline can end this.
                    try await connection.query("SET statement_timeout = 0")
                    try await connection.query("SELECT pg_sleep(20)")
                }
            } throws: { ($0 as? GatewayError)?.code == "database_timeout" }
            #expect(ContinuousClock.now - started < .seconds(3))
            // The pool goes on with a fresh connection, and the server's timeouts are in force on it.
            let one = try await database.query("SELECT 1").decode(Int.self)
            #expect(one == [1])
            let lockTimeout = try await database.query("SHOW lock_timeout").decode(String.self)
            #expect(lockTimeout == ["5s"])
            // The server's statement timeout (the database timeout, 15 s) ends a statement the client lets run.
            await #expect { try await database.query("SELECT pg_sleep(20)", timeout: .seconds(30)) } throws: { _ in true }
        }
    }

    /// PostgresNIO drops a query written to a connection that has just closed, and its caller waits for ever: after
    /// a server restart every collector waited so. Through `DatabaseConnection` it fails at once.
    @Test func aStatementOnAClosedConnectionFailsInsteadOfWaiting() async throws {
        let db = try await TestDatabase.create("closed")
        try await TestDatabase.withClient(db) { database in
            let started = ContinuousClock.now
            await #expect {
                try await database.withConnection(timeout: .seconds(20)) { connection in
                    connection.giveUp()
                    try await Task.sleep(for: .milliseconds(100))
                    try await connection.query("SELECT 1")
                }
            } throws: { ($0 as? GatewayError)?.code == "database_unavailable" }
            #expect(ContinuousClock.now - started < .seconds(2))
        }
    }
}
