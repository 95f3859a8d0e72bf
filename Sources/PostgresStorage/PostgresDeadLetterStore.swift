import Foundation
import GatewayCore
import Logging
import PostgresNIO

/// Logs UTMStack refused for good, in `dead_letters` (docs/failure-handling.md).
public struct PostgresDeadLetterStore: DeadLetterStore {
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    public func setAside(_ letter: DeadLetter) async throws {
        try await database.query(
            """
            INSERT INTO dead_letters (tenant_id, content_type, content_id, log_id, record_id, reason, detail, message, destination)
            VALUES (\(letter.tenant?.uuid), \(letter.contentType?.rawValue), \(letter.contentID), \(letter.logID),
                \(letter.recordID), \(letter.reason), \(letter.detail), \(Data(letter.message)), \(letter.destination))
            ON CONFLICT (tenant_id, log_id) DO UPDATE SET
                reason = EXCLUDED.reason, detail = EXCLUDED.detail, destination = EXCLUDED.destination,
                attempts = dead_letters.attempts + 1,
                last_refused_at = now()
            """)
    }

    public func list(tenant: TenantID?, limit: Int) async throws -> [StoredDeadLetter] {
        try await database.query(
            """
            SELECT \(unescaped: Self.columns), ''::bytea AS message FROM dead_letters
            WHERE \(tenant?.uuid)::uuid IS NULL OR tenant_id = \(tenant?.uuid)
            ORDER BY id LIMIT \(limit)
            """
        ).map(Self.letter)
    }

    public func get(_ id: Int64) async throws -> StoredDeadLetter? {
        try await database.query("SELECT \(unescaped: Self.columns), message FROM dead_letters WHERE id = \(id)")
            .map(Self.letter).first
    }

    public func remove(_ id: Int64) async throws -> Bool {
        !(try await database.query("DELETE FROM dead_letters WHERE id = \(id) RETURNING id").isEmpty)
    }

    public func counts(tenant: TenantID) async throws -> [ContentType: Int] {
        var counts: [ContentType: Int] = [:]
        for (type, count) in try await database.query(
            "SELECT content_type, count(*) FROM dead_letters WHERE tenant_id = \(tenant.uuid) GROUP BY content_type"
        ).decode((String?, Int).self) {
            if let type = type.flatMap(ContentType.init(rawValue:)) { counts[type] = count }
        }
        return counts
    }

    static let columns = """
        id, tenant_id, content_type, content_id, log_id, record_id, reason, detail, attempts, first_refused_at,
        last_refused_at, octet_length(message) AS bytes, destination
        """

    static func letter(_ row: PostgresRow) throws -> StoredDeadLetter {
        let r = row.makeRandomAccess()
        return StoredDeadLetter(
            id: try r["id"].decode(Int64.self),
            letter: DeadLetter(
                tenant: try r["tenant_id"].decode(UUID?.self).map(TenantID.init),
                contentType: try r["content_type"].decode(String?.self).flatMap(ContentType.init(rawValue:)),
                contentID: try r["content_id"].decode(String?.self), logID: try r["log_id"].decode(String.self),
                recordID: try r["record_id"].decode(String?.self), reason: try r["reason"].decode(String.self),
                detail: try r["detail"].decode(String.self), message: Array(try r["message"].decode(Data.self)),
                destination: try r["destination"].decode(String.self)),
            attempts: try r["attempts"].decode(Int.self), firstRefusedAt: try r["first_refused_at"].decode(Date.self),
            lastRefusedAt: try r["last_refused_at"].decode(Date.self), bytes: try r["bytes"].decode(Int.self))
    }
}
