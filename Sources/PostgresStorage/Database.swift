import GatewayCore
import Logging
import Metrics
import NIOCore
import PostgresNIO
import Synchronization

/// The gateway's PostgreSQL: a client whose every statement and transaction has a deadline (docs/failure-handling.md).
///
/// The server enforces `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` on every
/// connection (``DatabaseURL/clientConfiguration``), but a server that is frozen, or a network that drops packets,
/// enforces nothing. So the client bounds each operation too: when one outlives `timeout`, or its task is
/// cancelled, the connection it runs on is closed. That ends the wait at once, and the server, once it runs again,
/// ends the session and releases whatever it locked; the pool opens a fresh connection for the next operation.
public struct Database: Sendable {
    public let client: PostgresClient
    /// How long one statement or one transaction may take, waiting for a connection included.
    public let timeout: Duration
    let logger: Logger

    public init(client: PostgresClient, timeout: Duration, logger: Logger) {
        self.client = client
        self.timeout = timeout
        self.logger = logger
    }

    /// Runs one statement and returns its rows, within the deadline.
    @discardableResult
    public func query(_ query: PostgresQuery, timeout: Duration? = nil) async throws -> [PostgresRow] {
        try await withConnection(timeout: timeout) { try await $0.query(query) }
    }

    /// Runs `body` in a transaction, within the deadline: committed when it returns, rolled back when it throws
    /// (its error is rethrown as it is). A connection that broke is not asked to roll back: the server already did.
    public func transaction<R: Sendable>(
        timeout: Duration? = nil, _ body: @escaping @Sendable (DatabaseConnection) async throws -> R
    ) async throws -> R {
        try await withConnection(timeout: timeout) { connection in
            try await connection.query("BEGIN")
            let result: R
            do {
                result = try await body(connection)
            } catch {
                if !connection.isClosed { _ = try? await connection.query("ROLLBACK") }
                throw error
            }
            try await connection.query("COMMIT")
            return result
        }
    }

    /// Leases a connection for `body` and gives it up (closes it) when `body` outlives the deadline or the task is
    /// cancelled, so that no wait on PostgreSQL outlives either.
    public func withConnection<R: Sendable>(
        timeout: Duration? = nil, _ body: @escaping @Sendable (DatabaseConnection) async throws -> R
    ) async throws -> R {
        let limit = timeout ?? self.timeout
        let (client, logger) = (client, logger)
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                // The pool may hand out a connection that closed an instant ago, before it heard of it (after a
                // deadline gave one up, or a server restart): nothing ran on it, so take another.
                for _ in 0..<3 {
                    let leased = try await DatabaseError.sanitizing { try await client.withConnection { connection -> Leased<R> in
                        guard !connection.isClosed else { return .closed }
                        let leased = DatabaseConnection(connection: connection, logger: logger)
                        do {
                            return .done(try await withTaskCancellationHandler {
                                try await body(leased)
                            } onCancel: {
                                leased.giveUp()
                            })
                        } catch is ClosedBeforeFirstStatement {
                            return .closed
                        }
                    } }
                    if case .done(let result) = leased { return result }
                    try await Task.sleep(for: .milliseconds(50))
                }
                throw GatewayError.databaseConnectionLost
            }
            group.addTask {
                try await deadlineSleep(for: limit)
                throw GatewayError.databaseTimeout(limit)
            }
            defer { group.cancelAll() }
            return try await group.next()!!
        }
    }
}

/// Statements sent to PostgreSQL (every `BEGIN` and `COMMIT` counts): divided by the polls, what one poll costs
/// the database.
enum DatabaseMetrics {
    static let statements = Counter(label: "o365gw_database_statements_total")
}

/// A leased connection whose waits always end. PostgresNIO 1.33 drops a query written to a connection that has just
/// closed without failing it, so a plain `query` on it waits for ever (after a server restart every collector
/// waited so). Here a statement is refused on a closed connection, and one already waiting is failed when the lease
/// is given up (its deadline, or cancellation): the wait ends either way.
public struct DatabaseConnection: Sendable {
    let connection: PostgresConnection
    let logger: Logger
    private let state = LeaseState()

    init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    var isClosed: Bool { connection.isClosed }

    /// Runs one statement and returns its rows; fails at once when the connection is closed or given up.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        guard !connection.isClosed else { throw GatewayError.databaseConnectionLost }
        DatabaseMetrics.statements.increment()
        let (connection, logger, state) = (connection, logger, state)
        let first = state.isFirstStatement
        return try await withCheckedThrowingContinuation { continuation in
            let outcome = ResumeOnce(continuation)
            guard state.begin(outcome) else { return outcome.resume(with: .failure(GatewayError.databaseConnectionLost)) }
            // Not a child task: when PostgresNIO drops the query, this task never ends, and the caller must not wait
            // for it. It holds no lease (the caller's ends with the connection, given up).
            Task {
                do {
                    var rows: [PostgresRow] = []
                    for try await row in try await connection.query(query, logger: logger.forPostgresDriver) { rows.append(row) }
                    state.statementRan()
                    outcome.resume(with: .success(rows))
                } catch let error as PSQLError where first && error.code == .clientClosedConnection {
                    // Refused before it was sent: the connection was closing when leased.
                    outcome.resume(with: .failure(ClosedBeforeFirstStatement()))
                } catch let error as PSQLError {
                    outcome.resume(with: .failure(DatabaseError(error)))
                } catch {
                    outcome.resume(with: .failure(error))
                }
            }
        }
    }

    /// Closes the connection without waiting, and fails the statement waiting on it.
    public func giveUp() {
        state.giveUp()
        Self.giveUp(connection)
    }

    static func giveUp(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in }
    }
}

/// The first statement of a lease was refused because the connection was already closing: nothing ran.
private struct ClosedBeforeFirstStatement: Error {}

/// The statement waiting on a lease, whether the lease was given up, and whether a statement ran on it.
private final class LeaseState: Sendable {
    private let state = Mutex<(waiting: ResumeOnce<[PostgresRow]>?, gaveUp: Bool, ran: Bool)>((nil, false, false))

    var isFirstStatement: Bool { state.withLock { !$0.ran } }

    func statementRan() { state.withLock { $0.ran = true } }

    /// Records the statement now waiting; false when the lease was given up.
    func begin(_ outcome: ResumeOnce<[PostgresRow]>) -> Bool {
        state.withLock { state in
            guard !state.gaveUp else { return false }
            state.waiting = outcome
            return true
        }
    }

    func giveUp() {
        state.withLock { state in
            state.gaveUp = true
            defer { state.waiting = nil }
            return state.waiting
        }?.resume(with: .failure(GatewayError.databaseConnectionLost))
    }
}

/// What a lease gave: a connection that had closed already, or the body's result.
private enum Leased<R: Sendable>: Sendable {
    case closed
    case done(R)
}

/// Resumes a continuation with the first outcome only.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = Mutex(continuation) }

    func resume(with result: Result<T, any Error>) {
        continuation.withLock { pending in
            defer { pending = nil }
            return pending
        }?.resume(with: result)
    }
}

extension GatewayError {
    static let databaseConnectionLost = GatewayError(
        .unavailable, code: "database_unavailable", "The connection to PostgreSQL was lost; the operation is retried.")

    /// PostgreSQL did not answer in time; generic on purpose (no statement, no server detail).
    public static func databaseTimeout(_ limit: Duration) -> GatewayError {
        GatewayError(
            .unavailable, code: "database_timeout",
            "PostgreSQL did not answer within \(limit.components.seconds) s; the operation is retried.")
    }
}

extension Array where Element == PostgresRow {
    /// Decodes every row as `T`.
    public func decode<T: PostgresDecodable>(_ type: T.Type) throws -> [T] {
        try map { try $0.decode(T.self) }
    }

    /// Decodes every row as a tuple of columns.
    public func decode<each Column: PostgresDecodable>(_ types: (repeat each Column).Type) throws -> [(repeat each Column)] {
        try map { try $0.decode((repeat each Column).self) }
    }
}

extension Logger {
    /// The logger to hand PostgresNIO (a client's background logger, a query's): never below `info`. At `debug` and
    /// `trace` PostgresNIO logs every message it exchanges with the server (rows, bindings, an error's DETAIL), sealed
    /// credentials among them; the gateway's own lines keep the level asked for.
    public var forPostgresDriver: Logger {
        var logger = self
        if logger.logLevel < .info { logger.logLevel = .info }
        return logger
    }
}

/// A statement PostgreSQL refused, or a connection that failed, described without any row value. PSQLError's
/// reflection carries PostgreSQL's message and DETAIL ("Failing row contains (...)", a sealed credential included)
/// and the query with its bindings; this keeps the SQLSTATE, the table and the constraint only, so that no log line
/// and no error message can hold a row (docs/failure-handling.md).
public struct DatabaseError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// PostgresNIO's kind of error (`server`, `connectionClosed`, ...).
    public let kind: String
    /// PostgreSQL's SQLSTATE (`23514` for a check constraint), for an error the server sent.
    public let sqlState: String?
    public let table: String?
    public let constraint: String?

    init(_ error: PSQLError) {
        kind = "\(error.code)"
        sqlState = error.serverInfo?[.sqlState]
        table = error.serverInfo?[.tableName]
        constraint = error.serverInfo?[.constraintName]
    }

    public var description: String {
        var text = "database error (\(kind)"
        if let sqlState { text += ", SQLSTATE \(sqlState)" }
        if let table { text += ", table \(table)" }
        if let constraint { text += ", constraint \(constraint)" }
        return text + ")"
    }

    public var debugDescription: String { description }

    /// Runs `body`, turning a PSQLError it throws into a ``DatabaseError``.
    static func sanitizing<R>(_ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch let error as PSQLError {
            throw DatabaseError(error)
        }
    }
}
