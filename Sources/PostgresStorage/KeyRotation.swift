import Foundation
import CredentialCrypto
import GatewayCore
import Logging
import PostgresNIO

/// Re-seals every credential that is not under the active key, one row per transaction with the row locked,
/// so it runs safely while gateways serve (they read a row either before or after its re-sealing).
public struct CredentialResealer: Sendable {
    let client: PostgresClient
    let sealer: CredentialSealer
    let logger: Logger

    public init(client: PostgresClient, sealer: CredentialSealer, logger: Logger) {
        self.client = client
        self.sealer = sealer
        self.logger = logger
    }

    public struct Report: Sendable, Equatable {
        public var resealed: Int
        /// Credentials per key id after the run (all under the active key when it succeeded).
        public var byKey: [String: Int]
    }

    public func resealAll() async throws -> Report {
        let active = sealer.keyRing.activeKeyID
        var ids: [TenantID] = []
        for try await id in try await client.query(
            "SELECT id FROM tenants WHERE credential_key_id <> \(active) ORDER BY id", logger: logger
        ).decode(UUID.self) {
            ids.append(TenantID(id))
        }
        var resealed = 0
        for id in ids {
            let changed = try await client.transaction(logger: logger) { tx -> Bool in
                let rows = try await tx.query(
                    "SELECT credential_key_id, credential_box FROM tenants WHERE id = \(id.uuid) FOR UPDATE",
                    logger: logger)
                var sealed: SealedCredential?
                for try await (keyID, box) in rows.decode((String, Data).self) {
                    sealed = SealedCredential(keyID: keyID, box: box)
                }
                // Deleted meanwhile, or re-sealed by a concurrent secret rotation: nothing to do.
                guard let sealed, sealer.needsResealing(sealed) else { return false }
                let credential = try sealer.open(sealed, for: id)
                let fresh = try sealer.seal(credential, for: id)
                try await tx.query(
                    """
                    UPDATE tenants SET credential_key_id = \(fresh.keyID), credential_box = \(fresh.box)
                    WHERE id = \(id.uuid)
                    """, logger: logger)
                return true
            }
            if changed {
                resealed += 1
                logger.info("credential re-sealed", metadata: ["tenant": "\(id)", "keyId": "\(active)"])
            }
        }
        var byKey: [String: Int] = [:]
        for try await (keyID, count) in try await client.query(
            "SELECT credential_key_id, count(*) FROM tenants GROUP BY credential_key_id", logger: logger
        ).decode((String, Int).self) {
            byKey[keyID] = count
        }
        return Report(resealed: resealed, byKey: byKey)
    }
}
