import AsyncHTTPClient
import Foundation
import GatewayCore
import NIOCore

/// Posts expiry alerts as JSON to one URL (`O365GW_ALERT_WEBHOOK_URL`). A Slack or Microsoft Teams incoming webhook
/// works as it is: every body carries `text`, which both show; a Teams workflow (Power Automate) URL gets the
/// Adaptive Card message it expects. Other receivers get the alert's fields beside `text`. The URL usually holds a
/// token of its own, so it is a `Secret`: never logged, and errors name only the host.
public struct AlertWebhook: Sendable {
    public let url: Secret
    let host: String
    let timeout: TimeAmount

    /// Accepts `https://` URLs, and `http://` only to this machine (a local relay, tests).
    public init(url: Secret, timeoutSeconds: Int64 = 10) throws {
        guard let parsed = URL(string: url.unredacted), let host = parsed.host, !host.isEmpty,
            parsed.scheme == "https" || (parsed.scheme == "http" && ["127.0.0.1", "localhost", "::1"].contains(host))
        else {
            throw GatewayError(
                .invalidInput, code: "invalid_webhook_url",
                "O365GW_ALERT_WEBHOOK_URL must be an https:// URL (http:// only to 127.0.0.1 or localhost).")
        }
        self.url = url
        self.host = host
        self.timeout = .seconds(timeoutSeconds)
    }

    /// Posts one alert; throws unless the receiver answers 2xx within the timeout.
    public func post(_ alert: ExpiryAlert, now: Date = Date()) async throws {
        var request = HTTPClientRequest(url: url.unredacted)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "o365-gateway")
        request.body = .bytes(ByteBuffer(bytes: Self.body(alert, host: host, now: now)))
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout)
            _ = try await response.body.collect(upTo: 64 * 1024)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // AsyncHTTPClient's errors may quote the URL; say only which host failed.
            throw GatewayError(.unavailable, code: "webhook_unreachable", "The alert webhook at \(host) could not be reached.")
        }
        guard (200..<300).contains(response.status.code) else {
            throw GatewayError(.unavailable, code: "webhook_refused", "The alert webhook at \(host) answered HTTP \(response.status.code).")
        }
    }

    /// The JSON body for `host`: an Adaptive Card message for Teams workflows, otherwise `text` plus the fields.
    static func body(_ alert: ExpiryAlert, host: String, now: Date) -> [UInt8] {
        let text = alert.text(now: now)
        let object: [String: Any]
        if host.hasSuffix(".logic.azure.com") || host.hasSuffix(".powerplatform.com") || host.hasSuffix(".powerautomate.com") {
            object = [
                "type": "message", "text": text,
                "attachments": [[
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": [
                        "type": "AdaptiveCard", "version": "1.4",
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "body": [["type": "TextBlock", "text": text, "wrap": true]],
                    ] as [String: Any],
                ] as [String: Any]],
            ]
        } else {
            object = [
                "text": text, "source": "o365-gateway", "event": alert.code, "stage": alert.stage,
                "tenant": [
                    "id": "\(alert.tenant)", "name": alert.tenantName,
                    "tenantId": alert.microsoftTenantID.uuidString.lowercased(),
                    "clientId": alert.clientID.uuidString.lowercased(),
                ],
                "expiresAt": RFC3339.format(alert.expiresAt), "daysLeft": alert.daysLeft(now: now),
                "expirySource": alert.source.rawValue, "advice": alert.advice,
            ]
        }
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }
}
