import Crypto
import Foundation

/// One forward-only schema migration from `sql/NNNN_name.sql`.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// SHA-256 of the file's bytes, hex; recorded when applied so a later edit of the file is caught.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    var statements: [String] { SQLScript.statements(sql) }
}

/// An applied migration as recorded in `schema_migrations`.
public struct AppliedMigration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let checksum: String
}

/// How the database's schema compares with the migrations this build carries. Pure; tested without a database.
public struct SchemaStatus: Sendable, Equatable {
    /// Migrations this build has that the database has not applied, in order.
    public var pending: [Migration]
    /// Applied migrations whose file changed since (same version, other checksum).
    public var modified: [Int]
    /// Versions applied in the database that this build does not know (a newer gateway migrated it).
    public var unknown: [Int]

    public init(known: [Migration], applied: [AppliedMigration]) {
        let appliedByVersion = Dictionary(uniqueKeysWithValues: applied.map { ($0.version, $0) })
        let knownVersions = Set(known.map(\.version))
        pending = known.filter { appliedByVersion[$0.version] == nil }
        modified = known.compactMap { migration in
            guard let row = appliedByVersion[migration.version], row.checksum != migration.checksum else { return nil }
            return migration.version
        }
        unknown = applied.map(\.version).filter { !knownVersions.contains($0) }.sorted()
    }

    public var isCurrent: Bool { pending.isEmpty && modified.isEmpty }

    /// Why the schema is not usable, for an operator; nil when it is current.
    public var problem: String? {
        if !modified.isEmpty {
            return "applied migration(s) \(modified.map(String.init).joined(separator: ", ")) differ from the files "
                + "in this build; migrations are forward-only: restore the original files and add a new migration."
        }
        if !pending.isEmpty {
            return "the database schema is outdated (\(pending.count) migration(s) pending, next "
                + "\(pending[0].version)_\(pending[0].name)); run `o365-gateway migrate` first."
        }
        return nil
    }
}
