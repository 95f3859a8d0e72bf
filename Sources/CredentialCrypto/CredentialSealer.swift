import Crypto
import Foundation
import GatewayCore

/// A credential as stored: the id of the key that sealed it and the AES-GCM combined box
/// (12-byte nonce, ciphertext, 16-byte tag).
public struct SealedCredential: Sendable, Equatable {
    public var keyID: String
    public var box: Data

    public init(keyID: String, box: Data) {
        self.keyID = keyID
        self.box = box
    }
}

/// Seals tenant credentials with AES-256-GCM under the active key of a ``KeyRing``, with a fresh random nonce and
/// the tenant's id as additional authenticated data, so a box copied onto another tenant's row does not open.
public struct CredentialSealer: Sendable {
    public let keyRing: KeyRing

    public init(keyRing: KeyRing) { self.keyRing = keyRing }

    public func seal(_ credential: Credential, for tenant: TenantID) throws -> SealedCredential {
        try seal(CredentialPayload(credential).encoded(), authenticating: Self.aad(tenant))
    }

    public func open(_ sealed: SealedCredential, for tenant: TenantID) throws -> Credential {
        let plaintext = try open(sealed, authenticating: Self.aad(tenant), owner: "The credential of tenant \(tenant)", remedy: "Rotate the tenant's secret.")
        return try CredentialPayload.decode(plaintext).credential
    }

    /// Seals a destination's UTMStack connection key, bound to the destination's name.
    public func sealConnectionKey(_ key: Secret, destination: String) throws -> SealedCredential {
        try seal(Data(key.unredacted.utf8), authenticating: Self.connectionKeyAAD(destination))
    }

    public func openConnectionKey(_ sealed: SealedCredential, destination: String) throws -> Secret {
        let plaintext = try open(
            sealed, authenticating: Self.connectionKeyAAD(destination), owner: "The connection key of destination \(destination)",
            remedy: "Set the destination's connection key again.")
        return Secret(String(decoding: plaintext, as: UTF8.self))
    }

    private func seal(_ plaintext: Data, authenticating aad: Data) throws -> SealedCredential {
        let box = try AES.GCM.seal(plaintext, using: keyRing.activeKey, authenticating: aad)
        guard let combined = box.combined else {
            throw GatewayError(.internal, code: "sealing_failed", "Could not seal the credential.")
        }
        return SealedCredential(keyID: keyRing.activeKeyID, box: combined)
    }

    /// `owner` and `remedy` complete the messages; neither names anything secret.
    private func open(_ sealed: SealedCredential, authenticating aad: Data, owner: String, remedy: String) throws -> Data {
        guard let key = keyRing.key(sealed.keyID) else {
            throw GatewayError(
                .unavailable, code: "encryption_key_missing",
                "\(owner) is sealed under key \(sealed.keyID), which is not in "
                    + "O365GW_ENCRYPTION_KEYS; add that key back (after the active one).")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: sealed.box)
            return try AES.GCM.open(box, using: key, authenticating: aad)
        } catch {
            throw GatewayError(
                .unavailable, code: "credential_unreadable",
                "\(owner) does not decrypt under key \(sealed.keyID): the key is wrong or "
                    + "the stored value was altered or copied from another one. \(remedy)")
        }
    }

    /// Whether `sealed` is under another key than the active one (so key rotation should re-seal it).
    public func needsResealing(_ sealed: SealedCredential) -> Bool { sealed.keyID != keyRing.activeKeyID }

    static func aad(_ tenant: TenantID) -> Data { Data("o365-gateway/credential/v1/\(tenant)".utf8) }
    static func connectionKeyAAD(_ destination: String) -> Data { Data("o365-gateway/connection-key/v1/\(destination)".utf8) }
}

/// The plaintext inside a sealed box: a small versioned JSON document, so new credential kinds can be added.
struct CredentialPayload: Codable {
    var v: Int
    var type: String
    var secret: String?
    var certificate: String?
    var privateKey: String?
    var algorithm: String?

    init(_ credential: Credential) {
        switch credential {
        case .clientSecret(let secret):
            self.init(v: 1, type: CredentialKind.secret.rawValue, secret: secret.unredacted)
        case .certificate(let certificate):
            self.init(
                v: 1, type: CredentialKind.certificate.rawValue, certificate: certificate.certificatePEM,
                privateKey: certificate.privateKeyPEM.unredacted, algorithm: certificate.algorithm.rawValue)
        }
    }

    init(
        v: Int, type: String, secret: String? = nil, certificate: String? = nil, privateKey: String? = nil,
        algorithm: String? = nil
    ) {
        self.v = v
        self.type = type
        self.secret = secret
        self.certificate = certificate
        self.privateKey = privateKey
        self.algorithm = algorithm
    }

    func encoded() throws -> Data { try JSONEncoder().encode(self) }

    static func decode(_ data: Data) throws -> CredentialPayload {
        guard let payload = try? JSONDecoder().decode(CredentialPayload.self, from: data) else {
            throw GatewayError(.internal, code: "credential_unreadable", "A stored credential has an unknown format.")
        }
        return payload
    }

    var credential: Credential {
        get throws {
            switch (v, type, secret) {
            case (1, CredentialKind.secret.rawValue, .some(let secret)): return .clientSecret(Secret(secret))
            case (1, CredentialKind.certificate.rawValue, _):
                guard let certificate, let privateKey,
                    let algorithm = ClientCertificate.Algorithm(rawValue: algorithm ?? "PS256")
                else { fallthrough }
                return .certificate(
                    ClientCertificate(certificatePEM: certificate, privateKeyPEM: Secret(privateKey), algorithm: algorithm))
            default:
                throw GatewayError(
                    .internal, code: "credential_unreadable",
                    "A stored credential has kind \(type) version \(v), which this build does not know.")
            }
        }
    }
}
