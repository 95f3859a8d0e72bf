import Foundation
import GatewayApp
import GatewayCore
import PostgresStorage
import Testing
import X509

/// PostgreSQL over TLS checked against a private CA, as managed PostgreSQL services require: a cluster of its own with
/// `ssl = on` and a certificate (for `localhost`, not for 127.0.0.1) signed by a CA made in the test.
@Suite(.timeLimit(.minutes(2)), .serialized) struct DatabaseTLSTests {
    static let password = "db-tls-probe-password-31"

    /// A PostgreSQL cluster serving TLS with `pki`'s certificate, and a folder with its CA and another CA.
    static func withTLSCluster(_ body: (LocalPostgres, _ caFile: String, _ otherCAFile: String) async throws -> Void) async throws {
        let pki = try TestPKI(names: [.dnsName("localhost")]), other = try TestPKI()
        let postgres = try LocalPostgres(logger: quietLogger, tls: (pki.serverCertificatePEM, pki.serverKeyPEM))
        defer { postgres.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("o365gw-dbtls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let caFile = directory.appendingPathComponent("ca.pem").path, otherCAFile = directory.appendingPathComponent("other-ca.pem").path
        try pki.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        try other.caPEM.write(toFile: otherCAFile, atomically: true, encoding: .utf8)
        try await body(postgres, caFile, otherCAFile)
    }

    static func url(host: String = "localhost", _ postgres: LocalPostgres, _ query: String) -> String {
        "postgres://postgres:\(password)@\(host):\(postgres.port)/postgres?\(query)"
    }

    /// The error `body` throws, as a ``GatewayError``.
    static func failure(_ body: () async throws -> Void) async -> GatewayError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? GatewayError
        }
    }

    @Test func verifyFullConnectsWithTheRightCAAndFailsClearlyOtherwise() async throws {
        try await Self.withTLSCluster { postgres, caFile, otherCAFile in
            // The right CA (in the URL, or as the setting), the address the certificate names: an encrypted session.
            for url in [
                try DatabaseURL(Secret(Self.url(postgres, "sslmode=verify-full&sslrootcert=\(caFile)"))),
                try DatabaseURL(Secret(Self.url(postgres, "sslmode=verify-full")), caFile: caFile),
                // verify-ca checks the CA only: 127.0.0.1, which the certificate does not name, is accepted.
                try DatabaseURL(Secret(Self.url(host: "127.0.0.1", postgres, "sslmode=verify-ca")), caFile: caFile),
            ] {
                let encrypted = try await Gateway.withDatabase(url, logger: quietLogger) { database in
                    try await database.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").decode(Bool.self)
                }
                #expect(encrypted == [true], "\(url)")
            }

            // Another CA, the system trust store, a host the certificate does not name: a clear error at once
            // (not a deadline), naming what failed and never the password.
            let cases: [(DatabaseURL, String)] = [
                (try DatabaseURL(Secret(Self.url(postgres, "sslmode=verify-full")), caFile: otherCAFile),
                 "its certificate is not signed by the CA in \(otherCAFile)"),
                (try DatabaseURL(Secret(Self.url(postgres, "sslmode=verify-ca")), caFile: otherCAFile),
                 "its certificate is not signed by the CA in \(otherCAFile)"),
                (try DatabaseURL(Secret(Self.url(postgres, "sslmode=verify-full"))), "not signed by a CA of the system trust store"),
                (try DatabaseURL(Secret(Self.url(host: "127.0.0.1", postgres, "sslmode=verify-full")), caFile: caFile),
                 "is not issued for 127.0.0.1"),
            ]
            for (url, expected) in cases {
                let started = ContinuousClock.now
                let error = await Self.failure {
                    _ = try await Gateway.withDatabase(url, logger: quietLogger) { database in try await database.query("SELECT 1").count }
                }
                #expect(error?.code == "database_tls_failed", "\(url): \(String(describing: error))")
                #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
                #expect(error?.message.contains(Self.password) == false)
                #expect(ContinuousClock.now - started < .seconds(10), "a refused certificate fails at once")
            }
        }
    }

    /// The executable: `migrate` with the CA as a setting; a wrong CA stops `report` with the error and no password;
    /// `sslmode=require` works, unchecked, and says so once.
    @Test func theCommandsUseTheCAAndWarnAboutRequire() async throws {
        try await Self.withTLSCluster { postgres, caFile, otherCAFile in
            let verified = try await Executable.runAside(
                ["migrate"],
                environment: ["O365GW_DATABASE_URL": Self.url(postgres, "sslmode=verify-full"), "O365GW_DATABASE_CA_FILE": caFile])
            #expect(verified.status == 0 && !verified.stderr.contains("sslmode=require"), "\(verified.stdout) \(verified.stderr)")

            let refused = try await Executable.runAside(
                ["report", "secret-expiry"],
                environment: ["O365GW_DATABASE_URL": Self.url(postgres, "sslmode=verify-full&sslrootcert=\(otherCAFile)")])
            #expect(refused.status == 2 && refused.stderr.contains("database_tls_failed"), "\(refused.stderr)")
            #expect(refused.stderr.contains("not signed by the CA in \(otherCAFile)"), "\(refused.stderr)")

            let unchecked = try await Executable.runAside(
                ["report", "secret-expiry", "--format", "json"],
                environment: ["O365GW_DATABASE_URL": Self.url(postgres, "sslmode=require"), "O365GW_LOG_LEVEL": "info"])
            #expect(unchecked.status == 0, "\(unchecked.stderr)")
            let warnings = unchecked.stderr.components(separatedBy: "sslmode=require encrypts the connection").count - 1
            #expect(warnings == 1, "\(unchecked.stderr)")

            let conflicting = try await Executable.runAside(
                ["migrate"],
                environment: ["O365GW_DATABASE_URL": Self.url(postgres, "sslmode=require"), "O365GW_DATABASE_CA_FILE": caFile])
            #expect(conflicting.status == 2 && conflicting.stderr.contains("use sslmode=verify-full"), "\(conflicting.stderr)")

            for result in [verified, refused, unchecked, conflicting] {
                #expect(!result.stdout.contains(Self.password) && !result.stderr.contains(Self.password))
            }
        }
    }
}
