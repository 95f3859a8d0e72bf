import GatewayCore
import Logging
import PostgresNIO

/// Applies the embedded migrations in order, each in its own transaction, under an advisory lock so that
/// replicas started together do not race. Idempotent; refuses to run when an applied migration was changed.
public struct Migrator: Sendable {
    /// Arbitrary constant naming the migration lock (pg_advisory_lock key).
    static let lockKey: Int64 = 0x0365_6A7E_0001
    let client: PostgresClient
    let migrations: [Migration]
    let logger: Logger

    public init(client: PostgresClient, migrations: [Migration]? = nil, logger: Logger) {
        self.client = client
        self.migrations = migrations ?? Migration.embedded
        self.logger = logger
    }

    /// Applies what is pending and returns the versions it applied.
    @discardableResult
    public func migrate() async throws -> [Migration] {
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger)
            do {
                let applied = try await apply(on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                throw error
            }
        }
    }

    private func apply(on connection: PostgresConnection) async throws -> [Migration] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        let status = SchemaStatus(known: migrations, applied: try await Self.applied(on: connection, logger: logger))
        if !status.modified.isEmpty, let problem = status.problem {
            throw GatewayError(.unavailable, code: "migration_modified", problem)
        }
        for migration in status.pending {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            try await connection.withTransaction(logger: logger) { tx in
                for statement in migration.statements {
                    try await tx.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await tx.query(
                    """
                    INSERT INTO schema_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: logger)
            }
        }
        return status.pending
    }

    /// Compares the database with this build's migrations without changing anything.
    public func status() async throws -> SchemaStatus {
        let exists = try await client.query(
            "SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger
        ).decode(Bool.self).first { _ in true } ?? false
        guard exists else { return SchemaStatus(known: migrations, applied: []) }
        return try await client.withConnection { connection in
            SchemaStatus(known: migrations, applied: try await Self.applied(on: connection, logger: logger))
        }
    }

    static func applied(on connection: PostgresConnection, logger: Logger) async throws -> [AppliedMigration] {
        var result: [AppliedMigration] = []
        let rows = try await connection.query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version", logger: logger)
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            result.append(AppliedMigration(version: version, name: name, checksum: checksum))
        }
        return result
    }
}
