import Crypto
import Foundation
import GatewayCore
import SwiftASN1
import X509
import _CryptoExtras

/// Checks and uses a certificate credential: parses the PEM blocks, requires an RSA key of at least 2048 bits that
/// matches the certificate, and signs client assertions. Errors never quote key material.
public struct CertificateCredential: Sendable {
    public let certificate: ClientCertificate
    let privateKey: _RSA.Signing.PrivateKey
    let certificateDER: [UInt8]
    /// When the certificate stops being valid (its expiry, for expiry alerts).
    public let notValidAfter: Date

    public init(_ certificate: ClientCertificate, field: String = "clientCertificate") throws {
        func invalid(_ message: String) -> GatewayError { GatewayError.invalidField(field, message) }
        let parsed: Certificate
        do {
            parsed = try Certificate(pemEncoded: certificate.certificatePEM)
        } catch {
            throw invalid("certificatePem is not a PEM certificate (-----BEGIN CERTIFICATE-----).")
        }
        let key: _RSA.Signing.PrivateKey
        do {
            key = try _RSA.Signing.PrivateKey(pemRepresentation: certificate.privateKeyPEM.unredacted)
        } catch {
            throw invalid("privateKeyPem is not a PEM RSA private key (PKCS#1 or PKCS#8, unencrypted).")
        }
        guard key.keySizeInBits >= 2048 else { throw invalid("the RSA key must have at least 2048 bits.") }
        guard let certificateKey = _RSA.Signing.PublicKey(parsed.publicKey),
            certificateKey.derRepresentation == key.publicKey.derRepresentation
        else {
            throw invalid("privateKeyPem does not belong to the certificate in certificatePem.")
        }
        var serializer = DER.Serializer()
        try serializer.serialize(parsed)
        self.certificate = certificate
        self.privateKey = key
        self.certificateDER = serializer.serializedBytes
        self.notValidAfter = parsed.notValidAfter
    }

    /// base64url SHA-1 thumbprint of the certificate (`x5t`).
    public var sha1Thumbprint: String { Base64URL.encode(Array(Insecure.SHA1.hash(data: certificateDER))) }
    /// base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    public var sha256Thumbprint: String { Base64URL.encode(Array(SHA256.hash(data: certificateDER))) }

    /// The SHA-1 (as the Entra portal shows it) and SHA-256 thumbprints, raw: what Graph may give as a key
    /// credential's `customKeyIdentifier`.
    public var thumbprints: [[UInt8]] { [Array(Insecure.SHA1.hash(data: certificateDER)), Array(SHA256.hash(data: certificateDER))] }

    /// A signed JWT `client_assertion` for the token endpoint `audience`, valid for 10 minutes.
    public func clientAssertion(clientID: UUID, audience: String, now: Date = Date(), jwtID: UUID = UUID()) throws -> String {
        let algorithm = certificate.algorithm
        var header: [String: String] = ["alg": algorithm.rawValue, "typ": "JWT"]
        switch algorithm {
        case .rs256: header["x5t"] = sha1Thumbprint
        case .ps256: header["x5t#S256"] = sha256Thumbprint
        }
        let issued = Int(now.timeIntervalSince1970)
        let client = clientID.uuidString.lowercased()
        let claims: [String: Any] = [
            "aud": audience, "iss": client, "sub": client, "jti": jwtID.uuidString.lowercased(),
            "nbf": issued, "iat": issued, "exp": issued + 600,
        ]
        let signingInput = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
            + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let padding: _RSA.Signing.Padding = algorithm == .rs256 ? .insecurePKCS1v1_5 : .PSS
        let signature = try privateKey.signature(for: Array(signingInput.utf8), padding: padding)
        return signingInput + "." + Base64URL.encode(Array(signature.rawRepresentation))
    }
}

public enum Base64URL {
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    public static func decode(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
