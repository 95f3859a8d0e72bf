import Logging
import PostgresNIO

extension PostgresClient {
    /// `withTransaction` that rethrows the body's own error: PostgresNIO wraps it in `PostgresTransactionError`,
    /// which would hide a domain error (not found, version mismatch) behind a generic one.
    func transaction<R>(
        logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending R
    ) async throws -> sending R {
        do {
            return try await withTransaction(logger: logger, isolation: isolation, body)
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError { throw closureError }
            throw error
        }
    }
}
