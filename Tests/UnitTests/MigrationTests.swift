import Foundation
import Testing

@testable import AdminAPI
@testable import PostgresStorage

@Suite struct SQLScriptTests {
    @Test func splitsAtTopLevelSemicolonsOnly() {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT 'semi;colon', "we;ird" int);
            /* block; comment */ INSERT INTO a VALUES ('it''s; fine');
            CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
            SELECT $$a;b$$;
            -- trailing comment only
            """
        let statements = SQLScript.statements(script)
        #expect(statements.count == 4)
        #expect(statements[0].hasSuffix("\"we;ird\" int)"))
        #expect(statements[1].contains("'it''s; fine'"))
        #expect(statements[2].contains("SELECT 1; $body$ LANGUAGE sql"))
        #expect(statements[3] == "SELECT $$a;b$$")
    }

    @Test func theShippedMigrationsSplitIntoStatements() {
        #expect(Migration.embedded.allSatisfy { !$0.statements.isEmpty })
    }
}

@Suite struct SchemaStatusTests {
    let m1 = Migration(version: 1, name: "one", sql: "CREATE TABLE a (x int);")
    let m2 = Migration(version: 2, name: "two", sql: "CREATE TABLE b (x int);")

    func applied(_ m: Migration, checksum: String? = nil) -> AppliedMigration {
        AppliedMigration(version: m.version, name: m.name, checksum: checksum ?? m.checksum)
    }

    @Test func anEmptyDatabaseHasEverythingPending() {
        let status = SchemaStatus(known: [m1, m2], applied: [])
        #expect(status.pending == [m1, m2])
        #expect(!status.isCurrent)
        #expect(status.problem?.contains("o365-gateway migrate") == true)
    }

    @Test func aMigratedDatabaseIsCurrent() {
        let status = SchemaStatus(known: [m1, m2], applied: [applied(m1), applied(m2)])
        #expect(status.isCurrent && status.problem == nil)
    }

    @Test func anEditedMigrationIsReported() {
        let status = SchemaStatus(known: [m1, m2], applied: [applied(m1, checksum: "0000"), applied(m2)])
        #expect(status.modified == [1])
        #expect(status.problem?.contains("forward-only") == true)
    }

    @Test func versionsFromANewerBuildAreKnownButNotBlocking() {
        let m3 = AppliedMigration(version: 3, name: "three", checksum: "x")
        let status = SchemaStatus(known: [m1, m2], applied: [applied(m1), applied(m2), m3])
        #expect(status.unknown == [3])
        #expect(status.isCurrent)
    }
}

/// The binary carries sql/ and openapi.yaml as Swift literals; these must match the files.
@Suite struct EmbeddedAssetsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func embeddedMigrationsMatchSQLFolder() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("sql").path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files.count == Migration.embedded.count, "run scripts/embed-assets.py")
        for (file, migration) in zip(files, Migration.embedded) {
            let text = try String(contentsOf: Self.root.appendingPathComponent("sql/\(file)"), encoding: .utf8)
            #expect(file == String(format: "%04d", migration.version) + "_\(migration.name).sql")
            #expect(text == migration.sql, "sql/\(file) changed; run scripts/embed-assets.py")
        }
    }

    @Test func embeddedOpenAPIDocumentMatchesTheFile() throws {
        let text = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/AdminAPI/openapi.yaml"), encoding: .utf8)
        #expect(text == OpenAPIDocument.yaml, "openapi.yaml changed; run scripts/generate-openapi.sh")
    }
}
