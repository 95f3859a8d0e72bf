import GatewayCore
import Logging
import PostgresNIO

/// Applies the embedded migrations in order, each in its own transaction, under an advisory lock so that
/// replicas started together do not race. Idempotent; refuses to run when an applied migration was changed.
public struct Migrator: Sendable {
    /// Arbitrary constant naming the migration lock (pg_advisory_lock key).
    static let lockKey: Int64 = 0x0365_6A7E_0001
    /// A migration may rewrite large tables, and a replica may wait for another's: the session's statement and lock
    /// timeouts are lifted, and the whole run is bounded by this instead.
    static let timeout: Duration = .seconds(3600)
    let database: Database
    let migrations: [Migration]
    let logger: Logger

    public init(database: Database, migrations: [Migration]? = nil, logger: Logger) {
        self.database = database
        self.migrations = migrations ?? Migration.embedded
        self.logger = logger
    }

    /// Applies what is pending and returns the versions it applied.
    @discardableResult
    public func migrate() async throws -> [Migration] {
        try await database.withConnection(timeout: Self.timeout) { connection in
            // The connection goes back to the pool closed, so no later user inherits the lifted timeouts.
            defer { connection.giveUp() }
            try await connection.query("SET statement_timeout = 0")
            try await connection.query("SET lock_timeout = 0")
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))")
            do {
                let applied = try await apply(on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                throw error
            }
        }
    }

    private func apply(on connection: DatabaseConnection) async throws -> [Migration] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        let status = SchemaStatus(known: migrations, applied: try await Self.applied(on: connection))
        if !status.modified.isEmpty, let problem = status.problem {
            throw GatewayError(.unavailable, code: "migration_modified", problem)
        }
        for migration in status.pending {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            try await connection.query("BEGIN")
            do {
                for statement in migration.statements { try await connection.query(PostgresQuery(unsafeSQL: statement)) }
                try await connection.query(
                    """
                    INSERT INTO schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """)
                try await connection.query("COMMIT")
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
        return status.pending
    }

    /// Compares the database with this build's migrations without changing anything.
    public func status() async throws -> SchemaStatus {
        let exists = try await database.query("SELECT to_regclass('schema_migrations') IS NOT NULL").decode(Bool.self).first ?? false
        guard exists else { return SchemaStatus(known: migrations, applied: []) }
        let migrations = migrations
        return try await database.withConnection { connection in
            SchemaStatus(known: migrations, applied: try await Self.applied(on: connection))
        }
    }

    static func applied(on connection: DatabaseConnection) async throws -> [AppliedMigration] {
        try await connection.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .decode((Int, String, String).self).map { AppliedMigration(version: $0.0, name: $0.1, checksum: $0.2) }
    }
}
