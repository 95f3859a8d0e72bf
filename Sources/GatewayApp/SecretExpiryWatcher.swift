import Foundation
import GatewayCore
import Logging
import ServiceLifecycle

/// Checks every enabled tenant's secret expiry periodically and reports expired and soon-expiring secrets as
/// integration problems (to UTMStack's `Notify` and the log), before collection breaks.
struct SecretExpiryWatcher: Service {
    let store: any TenantStore
    let reporter: any ProblemReporter
    let withinDays: Int
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await checkOnce(now: Date())
            } catch where !Task.isCancelled {
                logger.warning("secret expiry check failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            // Ends the wait on graceful shutdown or cancellation; either ends the loop.
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil else { return }
        }
    }

    func checkOnce(now: Date) async throws {
        let items = SecretExpiryReport.items(try await store.list().filter(\.enabled), now: now, withinDays: withinDays)
        for item in items {
            switch item.status {
            case .expired:
                await reporter.report(IntegrationProblem(
                    tenant: item.tenant.id, tenantName: item.tenant.name, code: "secret_expired",
                    advice: "The client \(item.tenant.credentialKind == .certificate ? "certificate" : "secret") expired; "
                        + "collection fails until a new one is set with PUT /api/v1/tenants/\(item.tenant.id)/secret."))
            case .expiring:
                await reporter.report(IntegrationProblem(
                    tenant: item.tenant.id, tenantName: item.tenant.name, code: "secret_expiring",
                    advice: "The client \(item.tenant.credentialKind == .certificate ? "certificate" : "secret") expires in "
                        + "\(item.daysLeft ?? 0) day(s); create a new one and set it with PUT /api/v1/tenants/\(item.tenant.id)/secret."))
            case .ok, .unknown:
                continue
            }
        }
    }
}
