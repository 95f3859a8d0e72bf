import Foundation
import GatewayCore
import HTTPTypes
import Logging
import OpenAPIRuntime
import Prometheus

/// Implements the operations of openapi.yaml over the domain ports.
struct AdminAPIHandler: APIProtocol {
    let store: any TenantStore
    let validator: (any CredentialValidator)?
    let status: (any CollectionStatusSource)?
    let deadLetters: (any DeadLetterStore)?
    let retrier: (any DeadLetterRetrier)?
    let destinations: (any DestinationStore)?
    /// The forwarders' state per destination (this replica's).
    let monitor: (any DestinationMonitor)?
    /// `default`: the UTMStack the configuration defines (not stored).
    let defaultDestination: Destination.Endpoint?
    let logger: Logger

    func listTenants(_ input: Operations.ListTenants.Input) async throws -> Operations.ListTenants.Output {
        let tenants = try await store.list()
        return .ok(.init(body: .json(.init(items: tenants.map(Components.Schemas.Tenant.init)))))
    }

    func createTenant(_ input: Operations.CreateTenant.Input) async throws -> Operations.CreateTenant.Output {
        guard case .json(let body) = input.body else { throw unsupportedMediaType }
        let tenant = try await store.create(try NewTenant(validating: body))
        return .created(
            .init(
                headers: .init(eTag: ETag.make(tenant.version), location: "/api/v1/tenants/\(tenant.id)"),
                body: .json(.init(tenant))))
    }

    func getTenant(_ input: Operations.GetTenant.Input) async throws -> Operations.GetTenant.Output {
        let id = try tenantID(input.path.id)
        guard let tenant = try await store.get(id) else { throw GatewayError.tenantNotFound("\(id)") }
        var body = Components.Schemas.Tenant(tenant)
        body.status = try await status?.status(of: tenant).map(Components.Schemas.ContentTypeStatus.init)
        return .ok(.init(headers: .init(eTag: ETag.make(tenant.version)), body: .json(body)))
    }

    func updateTenant(_ input: Operations.UpdateTenant.Input) async throws -> Operations.UpdateTenant.Output {
        let id = try tenantID(input.path.id)
        guard case .json(let body) = input.body else { throw unsupportedMediaType }
        let changes = try TenantChanges(validating: body)
        let tenant = try await store.update(id, changes, precondition: ETag.precondition(ifMatch: input.headers.ifMatch))
        return .ok(.init(headers: .init(eTag: ETag.make(tenant.version)), body: .json(.init(tenant))))
    }

    func deleteTenant(_ input: Operations.DeleteTenant.Input) async throws -> Operations.DeleteTenant.Output {
        let id = try tenantID(input.path.id)
        try await store.delete(id, precondition: ETag.precondition(ifMatch: input.headers.ifMatch))
        return .noContent(.init())
    }

    func rotateTenantSecret(
        _ input: Operations.RotateTenantSecret.Input
    ) async throws -> Operations.RotateTenantSecret.Output {
        let id = try tenantID(input.path.id)
        guard case .json(let rotation) = input.body else { throw unsupportedMediaType }
        let body = rotation.value1
        let (credential, certificateExpiry) = try validatedCredential(secret: body.clientSecret, certificate: body.clientCertificate)
        let expiresAt = try body.secretExpiresAt.map { try Validation.timestamp($0, field: "secretExpiresAt") } ?? certificateExpiry
        let tenant = try await store.replaceCredential(
            id, credential, secretExpiresAt: expiresAt, precondition: ETag.precondition(ifMatch: input.headers.ifMatch))
        return .ok(.init(headers: .init(eTag: ETag.make(tenant.version)), body: .json(.init(tenant))))
    }

    func validateTenant(_ input: Operations.ValidateTenant.Input) async throws -> Operations.ValidateTenant.Output {
        let id = try tenantID(input.path.id)
        guard let tenant = try await store.get(id) else { throw GatewayError.tenantNotFound("\(id)") }
        guard let validator else {
            throw GatewayError(
                .notImplemented, code: "validation_unavailable",
                "This gateway runs without a Microsoft client, so it cannot test credentials.")
        }
        let checks = await validator.validate(tenant, credential: try await store.credential(of: id))
        return .ok(.init(body: .json(.init(
            ok: checks.allSatisfy(\.ok),
            checks: checks.map { .init(name: $0.name, ok: $0.ok, code: $0.code, advice: $0.advice) }))))
    }

    // MARK: Destinations

    func listDestinations(_ input: Operations.ListDestinations.Input) async throws -> Operations.ListDestinations.Output {
        let stored = try await destinationStore().list().map(Components.Schemas.Destination.init)
        let configured = defaultDestination.map { [Components.Schemas.Destination(configured: $0)] } ?? []
        return .ok(.init(body: .json(.init(items: configured + stored))))
    }

    func createDestination(_ input: Operations.CreateDestination.Input) async throws -> Operations.CreateDestination.Output {
        guard case .json(let body) = input.body else { throw unsupportedMediaType }
        let (name, settings) = DestinationSettings.requested(body)
        let destination = try await destinationStore().create(name, settings)
        return .created(
            .init(
                headers: .init(eTag: ETag.make(destination.version), location: "/api/v1/destinations/\(destination.name)"),
                body: .json(.init(destination))))
    }

    func getDestination(_ input: Operations.GetDestination.Input) async throws -> Operations.GetDestination.Output {
        let store = try destinationStore()
        let name = input.path.name
        let tenants = try await store.tenants(of: name).map { "\($0)" }
        if name == Destination.defaultName, let defaultDestination {
            var body = Components.Schemas.Destination(configured: defaultDestination)
            body.tenants = tenants
            body.state = await monitor?.health(of: name).map(Components.Schemas.DestinationState.init)
            return .ok(.init(headers: .init(), body: .json(body)))
        }
        guard let destination = try await store.get(name) else { throw GatewayError.destinationNotFound(name) }
        var body = Components.Schemas.Destination(destination)
        body.tenants = tenants
        body.state = await monitor?.health(of: name).map(Components.Schemas.DestinationState.init)
        return .ok(.init(headers: .init(eTag: ETag.make(destination.version)), body: .json(body)))
    }

    func updateDestination(_ input: Operations.UpdateDestination.Input) async throws -> Operations.UpdateDestination.Output {
        let name = try storedDestinationName(input.path.name)
        guard case .json(let body) = input.body else { throw unsupportedMediaType }
        let destination = try await destinationStore().update(
            name, try DestinationChanges(validating: body), precondition: ETag.precondition(ifMatch: input.headers.ifMatch))
        return .ok(.init(headers: .init(eTag: ETag.make(destination.version)), body: .json(.init(destination))))
    }

    func deleteDestination(_ input: Operations.DeleteDestination.Input) async throws -> Operations.DeleteDestination.Output {
        let name = try storedDestinationName(input.path.name)
        try await destinationStore().delete(name, precondition: ETag.precondition(ifMatch: input.headers.ifMatch))
        return .noContent(.init())
    }

    /// `default` lives in the configuration: changed there, never deleted.
    private func storedDestinationName(_ name: String) throws -> String {
        guard name != Destination.defaultName else {
            throw GatewayError(
                .conflict, code: "destination_from_configuration",
                "default is the UTMStack the configuration defines; change it with the O365GW_UTMSTACK_* settings.")
        }
        return name
    }

    private func destinationStore() throws -> any DestinationStore {
        guard let destinations else {
            throw GatewayError(.notImplemented, code: "destinations_unavailable", "This gateway runs without a destination store.")
        }
        return destinations
    }

    // MARK: Dead letters

    func listDeadLetters(_ input: Operations.ListDeadLetters.Input) async throws -> Operations.ListDeadLetters.Output {
        let limit = input.query.limit ?? 100
        guard (1...1000).contains(limit) else { throw GatewayError.invalidField("limit", "must be a whole number from 1 to 1000.") }
        // A filter that is not a tenant id is a mistake in the request (400); an id no tenant has lists nothing.
        let tenant = try input.query.tenantId.map { TenantID(try Validation.guid($0, field: "tenantId")) }
        let letters = try await deadLetterStore().list(tenant: tenant, limit: limit)
        return .ok(.init(body: .json(.init(items: letters.map(Components.Schemas.DeadLetter.init)))))
    }

    func getDeadLetter(_ input: Operations.GetDeadLetter.Input) async throws -> Operations.GetDeadLetter.Output {
        guard let letter = try await deadLetterStore().get(try deadLetterID(input.path.id)) else {
            throw GatewayError.deadLetterNotFound(input.path.id)
        }
        return .ok(.init(body: .json(.init(letter))))
    }

    func deleteDeadLetter(_ input: Operations.DeleteDeadLetter.Input) async throws -> Operations.DeleteDeadLetter.Output {
        let id = try deadLetterID(input.path.id)
        guard let letter = try await deadLetterStore().get(id), try await deadLetterStore().remove(id) else {
            throw GatewayError.deadLetterNotFound(input.path.id)
        }
        // Discarding is the one way a refused record leaves for good: say so in the log.
        logger.notice(
            "dead letter discarded by an operator",
            metadata: [
                "deadLetter": "\(id)", "tenant": "\(letter.letter.tenant.map { "\($0)" } ?? "-")",
                "contentId": "\(letter.letter.contentID ?? "-")", "recordId": "\(letter.letter.recordID ?? "-")",
                "logId": "\(letter.letter.logID)",
            ])
        return .noContent(.init())
    }

    func retryDeadLetter(_ input: Operations.RetryDeadLetter.Input) async throws -> Operations.RetryDeadLetter.Output {
        let id = try deadLetterID(input.path.id)
        guard let retrier else {
            throw GatewayError(.notImplemented, code: "retry_unavailable", "This gateway runs without a UTMStack forwarder.")
        }
        switch try await retrier.retry(id) {
        case .delivered:
            return .ok(.init(body: .json(.init(outcome: .delivered))))
        case .refused(let reason, let detail):
            return .ok(.init(body: .json(.init(outcome: .refused, reason: .init(rawValue: reason), detail: detail))))
        }
    }

    private func deadLetterStore() throws -> any DeadLetterStore {
        guard let deadLetters else {
            throw GatewayError(.notImplemented, code: "dead_letters_unavailable", "This gateway runs without a dead-letter store.")
        }
        return deadLetters
    }

    private func deadLetterID(_ raw: String) throws -> Int64 {
        guard let id = Int64(raw), id > 0 else { throw GatewayError.deadLetterNotFound(raw) }
        return id
    }

    func getSecretExpiryReport(
        _ input: Operations.GetSecretExpiryReport.Input
    ) async throws -> Operations.GetSecretExpiryReport.Output {
        let withinDays = input.query.withinDays ?? SecretExpiryReport.defaultWithinDays
        guard (0...3650).contains(withinDays) else {
            throw GatewayError.invalidField("withinDays", "must be a whole number of days from 0 to 3650.")
        }
        let now = Date()
        let items = SecretExpiryReport.items(try await store.list(), now: now, withinDays: withinDays)
        switch preferredReportFormat(input.headers.accept) {
        case .csv:
            return .ok(.init(body: .csv(HTTPBody(SecretExpiryReport.csv(items)))))
        case .html:
            return .ok(.init(body: .html(HTTPBody(SecretExpiryReport.html(items, generatedAt: now, withinDays: withinDays)))))
        case .json, .other:
            return .ok(.init(body: .json(.init(
                generatedAt: RFC3339.format(now), withinDays: withinDays, items: items.map(Components.Schemas.SecretExpiryReport.ItemsPayloadPayload.init)))))
        }
    }

    /// The client's most preferred of JSON, CSV and HTML; JSON when it names none of them.
    private func preferredReportFormat(
        _ accept: [AcceptHeaderContentType<Operations.GetSecretExpiryReport.AcceptableContentType>]
    ) -> Operations.GetSecretExpiryReport.AcceptableContentType {
        for entry in accept.sortedByQuality() {
            if case .other = entry.contentType { continue }
            return entry.contentType
        }
        return .json
    }

    private var unsupportedMediaType: GatewayError {
        GatewayError(.unsupportedMediaType, code: "unsupported_media_type", "Send the body as application/json.")
    }
}
