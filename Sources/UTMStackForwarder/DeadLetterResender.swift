import GatewayCore

/// Sends a dead letter to UTMStack again (the admin API's retry), through the forwarder of its tenant's destination
/// now (a tenant moved since goes to its new destination): the stored message as it is, so the log keeps its id. Delivered, the dead letter is removed; refused again, the forwarder has set it aside
/// once more (its attempts grew) before the batch counted as done.
public struct DeadLetterResender: DeadLetterRetrier {
    let store: any DeadLetterStore
    let destinations: DestinationRouter
    let timeout: Duration

    public init(store: any DeadLetterStore, destinations: DestinationRouter, timeout: Duration = .seconds(60)) {
        self.store = store
        self.destinations = destinations
        self.timeout = timeout
    }

    public func retry(_ id: Int64) async throws -> DeadLetterRetryOutcome {
        guard let stored = try await store.get(id) else { throw GatewayError.deadLetterNotFound("\(id)") }
        let letter = stored.letter
        let batch = OutboundBatch(
            encodedMessage: letter.message, id: letter.logID,
            origin: letter.tenant.map { LogOrigin(tenant: $0, contentType: letter.contentType, contentID: letter.contentID) })
        let forwarder = try await destinations.forwarder(of: letter.tenant)
        do {
            try await withTimeout(timeout) { [forwarder] in
                try await forwarder.waitDelivered(try await forwarder.submit(batch))
            }
        } catch is TimeoutError {
            throw GatewayError(
                .unavailable, code: "utmstack_unavailable",
                "UTMStack did not acknowledge the log within \(timeout.components.seconds) s; it stays set aside (if it "
                    + "arrives later, a second retry sends it again with the same id).")
        }
        if let after = try await store.get(id), after.attempts > stored.attempts {
            return .refused(reason: after.letter.reason, detail: after.letter.detail)
        }
        _ = try await store.remove(id)
        return .delivered
    }
}
