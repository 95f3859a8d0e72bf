import Foundation
import CredentialCrypto
import GatewayCore
import Logging
import PostgresNIO

/// Re-seals every credential, and every destination's connection key, that is not under the active key, one row
/// per transaction with the row locked, so it runs safely while gateways serve (they read a row either before or
/// after its re-sealing).
public struct CredentialResealer: Sendable {
    let database: Database
    let sealer: CredentialSealer
    let logger: Logger

    public init(database: Database, sealer: CredentialSealer, logger: Logger) {
        self.database = database
        self.sealer = sealer
        self.logger = logger
    }

    public struct Report: Sendable, Equatable {
        public var resealed: Int
        /// Credentials and connection keys per key id after the run (all under the active key when it succeeded).
        public var byKey: [String: Int]
    }

    public func resealAll() async throws -> Report {
        let active = sealer.keyRing.activeKeyID
        let ids = try await database.query("SELECT id FROM tenants WHERE credential_key_id <> \(active) ORDER BY id")
            .decode(UUID.self).map(TenantID.init)
        var resealed = 0
        for id in ids {
            let sealer = sealer
            let changed = try await database.transaction { tx -> Bool in
                let sealed = try await tx.query(
                    "SELECT credential_key_id, credential_box FROM tenants WHERE id = \(id.uuid) FOR UPDATE"
                ).decode((String, Data).self).first.map { SealedCredential(keyID: $0.0, box: $0.1) }
                // Deleted meanwhile, or re-sealed by a concurrent secret rotation: nothing to do.
                guard let sealed, sealer.needsResealing(sealed) else { return false }
                let credential = try sealer.open(sealed, for: id)
                let fresh = try sealer.seal(credential, for: id)
                try await tx.query(
                    """
                    UPDATE tenants SET credential_key_id = \(fresh.keyID), credential_box = \(fresh.box)
                    WHERE id = \(id.uuid)
                    """)
                return true
            }
            if changed {
                resealed += 1
                logger.info("credential re-sealed", metadata: ["tenant": "\(id)", "keyId": "\(active)"])
            }
        }
        resealed += try await resealConnectionKeys()
        var byKey: [String: Int] = [:]
        for (keyID, count) in try await database.query(
            """
            SELECT key_id, count(*) FROM (
                SELECT credential_key_id FROM tenants
                UNION ALL SELECT connection_key_id FROM destinations WHERE connection_key_id IS NOT NULL
            ) AS sealed(key_id) GROUP BY key_id
            """
        ).decode((String, Int).self) {
            byKey[keyID] = count
        }
        return Report(resealed: resealed, byKey: byKey)
    }

    private func resealConnectionKeys() async throws -> Int {
        let active = sealer.keyRing.activeKeyID
        let names = try await database.query("SELECT name FROM destinations WHERE connection_key_id <> \(active) ORDER BY name")
            .decode(String.self)
        var resealed = 0
        for name in names {
            let sealer = sealer
            let changed = try await database.transaction { tx -> Bool in
                let sealed = try await tx.query(
                    "SELECT connection_key_id, connection_key_box FROM destinations WHERE name = \(name) FOR UPDATE"
                ).decode((String?, Data?).self).first.flatMap { keyID, box in
                    keyID.flatMap { keyID in box.map { SealedCredential(keyID: keyID, box: $0) } }
                }
                guard let sealed, sealer.needsResealing(sealed) else { return false }
                let fresh = try sealer.sealConnectionKey(try sealer.openConnectionKey(sealed, destination: name), destination: name)
                try await tx.query(
                    "UPDATE destinations SET connection_key_id = \(fresh.keyID), connection_key_box = \(fresh.box) WHERE name = \(name)")
                return true
            }
            if changed {
                resealed += 1
                logger.info("connection key re-sealed", metadata: ["destination": "\(name)", "keyId": "\(active)"])
            }
        }
        return resealed
    }
}
