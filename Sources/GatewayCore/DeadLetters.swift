import Foundation
import Synchronization

/// A log UTMStack refused for good (docs/failure-handling.md): too large for the engine, or refused by it on every
/// attempt. It is set aside durably with its reason instead of blocking the stream, and can be sent again.
public struct DeadLetter: Sendable, Equatable {
    /// The gateway tenant the log belongs to (nil only for logs made outside collection, in tests).
    public var tenant: TenantID?
    public var contentType: ContentType?
    /// The blob the record came from.
    public var contentID: String?
    /// The `plugins.Log` id (deterministic for tenant and record).
    public var logID: String
    /// The audit record's `Id`, when the record has one.
    public var recordID: String?
    /// Stable, bounded: `message_too_large` or `refused_by_engine`.
    public var reason: String
    /// What happened, in words (the engine's status and message); never a secret.
    public var detail: String
    /// The encoded, length-prefixed `plugins.Log` message, sent again as it is on retry.
    public var message: [UInt8]
    /// The destination that refused it (a retry goes to the tenant's destination at the time).
    public var destination: String

    public init(
        tenant: TenantID?, contentType: ContentType?, contentID: String?, logID: String, recordID: String?,
        reason: String, detail: String, message: [UInt8], destination: String = Destination.defaultName
    ) {
        self.destination = destination
        self.tenant = tenant
        self.contentType = contentType
        self.contentID = contentID
        self.logID = logID
        self.recordID = recordID
        self.reason = reason
        self.detail = detail
        self.message = message
    }
}

/// A dead letter as stored, with its bookkeeping.
public struct StoredDeadLetter: Sendable, Equatable {
    public var id: Int64
    public var letter: DeadLetter
    /// How many times it was set aside (once, plus once per refused retry).
    public var attempts: Int
    public var firstRefusedAt: Date
    public var lastRefusedAt: Date
    /// The size of the log message.
    public var bytes: Int

    public init(id: Int64, letter: DeadLetter, attempts: Int, firstRefusedAt: Date, lastRefusedAt: Date, bytes: Int) {
        self.id = id
        self.letter = letter
        self.attempts = attempts
        self.bytes = bytes
        self.firstRefusedAt = firstRefusedAt
        self.lastRefusedAt = lastRefusedAt
    }
}

/// Where refused logs are set aside (PostgreSQL `dead_letters`), listed and taken back.
public protocol DeadLetterStore: Sendable {
    /// Stores `letter`, or counts one more refusal of the same log (same tenant and log id). Durable when it returns.
    func setAside(_ letter: DeadLetter) async throws
    /// The dead letters, oldest first, optionally of one tenant; `message` is left empty (see ``get(_:)``).
    func list(tenant: TenantID?, limit: Int) async throws -> [StoredDeadLetter]
    /// One dead letter with its message.
    func get(_ id: Int64) async throws -> StoredDeadLetter?
    /// Removes it (delivered on retry, or discarded by an operator); false when it did not exist.
    func remove(_ id: Int64) async throws -> Bool
    /// How many dead letters each content type of the tenant has.
    func counts(tenant: TenantID) async throws -> [ContentType: Int]
}

/// What sending a dead letter again did.
public enum DeadLetterRetryOutcome: Sendable, Equatable {
    /// UTMStack acknowledged it; it is no longer set aside.
    case delivered
    /// UTMStack refused it again; it stays set aside with the new reason.
    case refused(reason: String, detail: String)
}

/// Sends a dead letter to UTMStack again (the admin API's retry).
public protocol DeadLetterRetrier: Sendable {
    func retry(_ id: Int64) async throws -> DeadLetterRetryOutcome
}

extension GatewayError {
    public static func deadLetterNotFound(_ id: String) -> GatewayError {
        GatewayError(
            .notFound, code: "dead_letter_not_found",
            "No dead letter has the id \(id.prefix(40)); list them with GET /api/v1/dead-letters.")
    }
}

/// Dead letters in memory: for the forwarder benchmark and tests, where no database runs. Not durable.
public final class MemoryDeadLetterStore: DeadLetterStore {
    private struct State {
        var letters: [StoredDeadLetter] = []
        var nextID: Int64 = 1
    }

    private let state = Mutex(State())

    public init() {}

    public func setAside(_ letter: DeadLetter) async throws {
        state.withLock { state in
            if let index = state.letters.firstIndex(where: { $0.letter.tenant == letter.tenant && $0.letter.logID == letter.logID }) {
                state.letters[index].attempts += 1
                state.letters[index].letter.reason = letter.reason
                state.letters[index].letter.detail = letter.detail
                state.letters[index].lastRefusedAt = Date()
            } else {
                state.letters.append(StoredDeadLetter(
                    id: state.nextID, letter: letter, attempts: 1, firstRefusedAt: Date(), lastRefusedAt: Date(),
                    bytes: letter.message.count))
                state.nextID += 1
            }
        }
    }

    public func list(tenant: TenantID?, limit: Int) async throws -> [StoredDeadLetter] {
        state.withLock { state in
            Array(state.letters.filter { tenant == nil || $0.letter.tenant == tenant }.prefix(limit)).map {
                var stored = $0
                stored.letter.message = []
                return stored
            }
        }
    }

    public func get(_ id: Int64) async throws -> StoredDeadLetter? { state.withLock { $0.letters.first { $0.id == id } } }

    public func remove(_ id: Int64) async throws -> Bool {
        state.withLock { state in
            guard let index = state.letters.firstIndex(where: { $0.id == id }) else { return false }
            state.letters.remove(at: index)
            return true
        }
    }

    public func counts(tenant: TenantID) async throws -> [ContentType: Int] {
        state.withLock { state in
            state.letters.reduce(into: [:]) { counts, stored in
                if stored.letter.tenant == tenant, let type = stored.letter.contentType { counts[type, default: 0] += 1 }
            }
        }
    }
}
