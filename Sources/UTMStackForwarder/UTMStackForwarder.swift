import DequeModule
import Foundation
import GatewayCore
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// A promise that a submitted batch will be acknowledged by UTMStack; wait on it with
/// ``UTMStackForwarder/waitDelivered(_:)``.
public struct DeliveryTicket: Sendable, Hashable {
    let batch: UInt64
    /// A ticket for an empty batch, delivered from the start.
    public static let alreadyDelivered = DeliveryTicket(batch: 0)
}

public struct ForwarderStopped: Error, CustomStringConvertible {
    public var description: String { "the UTMStack forwarder stopped before the logs were acknowledged" }
}

/// Delivers logs to UTMStack over one long-lived gRPC stream (``EngineStream``), in order, and counts a log
/// delivered only when acknowledged. On a broken stream it reconnects with backoff and resends what was not
/// acknowledged. When the byte budget is full, ``submit(_:)`` waits: collectors slow down, nothing is dropped.
public actor UTMStackForwarder: Service {
    let configuration: ForwarderConfiguration
    let logger: Logger
    private var window: DeliveryWindow
    private var admissionQueue = Deque<(batch: OutboundBatch, continuation: CheckedContinuation<DeliveryTicket, any Error>)>()
    private var deliveryWaiters: [UInt64: [UInt64: CheckedContinuation<Void, any Error>]] = [:]
    private var nextWaiter: UInt64 = 0
    private var deliveredThrough: UInt64 = 0
    /// Wakes the writer of the current stream. Outside the actor so that graceful shutdown can wake it at once.
    private let wake = Mutex<AsyncStream<Void>.Continuation?>(nil)
    /// The connection loop waiting for the first logs to deliver (it connects only then).
    private let workWaiter = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private var stopped = false
    private let draining = Mutex(false)

    private let sentCounter = Counter(label: "o365gw_utmstack_logs_sent_total")
    private let deliveredCounter = Counter(label: "o365gw_utmstack_logs_delivered_total")
    private let resentCounter = Counter(label: "o365gw_utmstack_logs_resent_total")
    private let reconnectCounter = Counter(label: "o365gw_utmstack_stream_failures_total")
    private let heldBytesGauge = Gauge(label: "o365gw_utmstack_held_bytes")

    public init(configuration: ForwarderConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.window = DeliveryWindow(
            byteBudget: configuration.inFlightByteBudget, maxInFlight: configuration.maxInFlightLogs)
    }

    // MARK: Collectors' side

    /// Queues a batch for delivery, in order. Waits while the byte budget is full (backpressure).
    public func submit(_ batch: OutboundBatch) async throws -> DeliveryTicket {
        if stopped { throw ForwarderStopped() }
        if batch.isEmpty { return .alreadyDelivered }
        if admissionQueue.isEmpty && window.canAdmit(bytes: batch.byteCost) { return admit(batch) }
        return try await withCheckedThrowingContinuation { continuation in
            admissionQueue.append((batch, continuation))
        }
    }

    /// Encodes the logs (in the caller's task) and queues them for delivery, in order.
    public nonisolated func submit(_ logs: [OutboundLog]) async throws -> DeliveryTicket {
        try await submit(OutboundBatch(logs))
    }

    /// Returns when every log of the ticket's batch (and of every batch before it) was acknowledged. Throws
    /// `CancellationError` when the waiting task is cancelled (the logs stay queued).
    public func waitDelivered(_ ticket: DeliveryTicket) async throws {
        if ticket.batch <= deliveredThrough { return }
        if stopped { throw ForwarderStopped() }
        nextWaiter += 1
        let waiter = nextWaiter
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                deliveryWaiters[ticket.batch, default: [:]][waiter] = continuation
            }
        } onCancel: {
            Task { await self.cancelWaiter(waiter, batch: ticket.batch) }
        }
    }

    private func cancelWaiter(_ waiter: UInt64, batch: UInt64) {
        deliveryWaiters[batch]?.removeValue(forKey: waiter)?.resume(throwing: CancellationError())
    }

    /// Whether every log of the ticket's batch (and of every batch before it) was acknowledged; does not wait.
    public func isDelivered(_ ticket: DeliveryTicket) -> Bool { ticket.batch <= deliveredThrough }

    /// Submits and waits for the acknowledgement.
    public func deliver(_ logs: [OutboundLog]) async throws {
        let ticket = try await submit(logs)
        try await waitDelivered(ticket)
    }

    /// Bytes held now and at most so far (for tests and the benchmark).
    public var heldBytes: (now: Int, highWater: Int) { (window.heldBytes, window.highWaterBytes) }

    private func admit(_ batch: OutboundBatch) -> DeliveryTicket {
        let (id, _) = window.enqueue(batch)
        heldBytesGauge.record(window.heldBytes)
        wakeWriter()
        return DeliveryTicket(batch: id)
    }

    // MARK: Stream side

    private func openWakeups() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wake.withLock { $0 = continuation }
        continuation.yield()
        return stream
    }

    private func closeWakeups() {
        wake.withLock {
            $0?.finish()
            $0 = nil
        }
    }

    private nonisolated func wakeWriter() {
        wake.withLock { _ = $0?.yield() }
        workWaiter.withLock {
            $0?.resume()
            $0 = nil
        }
    }

    /// Returns once logs wait to be delivered, or on draining or cancellation: the gateway connects to UTMStack when
    /// it has something to deliver (and stays connected), so a gateway that starts before its engine, or has
    /// nothing to collect yet, does not report an outage that does not matter.
    private func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                workWaiter.withLock {
                    if !window.isIdle || draining.withLock({ $0 }) || Task.isCancelled {
                        continuation.resume()
                    } else {
                        $0 = continuation
                    }
                }
            }
        } onCancel: {
            workWaiter.withLock {
                $0?.resume()
                $0 = nil
            }
        }
    }

    /// Graceful shutdown: stop once everything held is acknowledged (the writer half-closes an idle stream).
    private nonisolated func beginDraining() {
        draining.withLock { $0 = true }
        wakeWriter()
    }

    /// Logs to write now; empty when the window is full or nothing waits.
    private func takeForSending() -> DeliveryWindow.Outgoing {
        let outgoing = window.takeForSending()
        sentCounter.increment(by: outgoing.count)
        return outgoing
    }

    private var isDrained: Bool { draining.withLock { $0 } && window.isIdle && admissionQueue.isEmpty }

    /// Applies the acknowledgements of one read from the stream, in order (UTMStack sends one per log, so this is
    /// the hottest path; it runs once per read, not once per log): resumes waiters of completed batches, admits
    /// waiting submissions, and wakes the writer only when something waits to be sent. Returns whether it
    /// acknowledged anything and whether the forwarder is now drained.
    private func acknowledge(_ ids: [String]) -> (acknowledged: Bool, drained: Bool) {
        var delivered = 0
        var completedThrough: UInt64?
        for id in ids {
            let ack = window.acknowledge(id)
            guard ack.delivered > 0 else {
                logger.debug("acknowledgement for an id not in flight", metadata: ["lastId": "\(id)"])
                continue
            }
            delivered += ack.delivered
            if let last = ack.completedBatches.last { completedThrough = last }
        }
        guard delivered > 0 else { return (false, isDrained) }
        deliveredCounter.increment(by: delivered)
        if let last = completedThrough {
            deliveredThrough = last
            for batch in deliveryWaiters.keys.filter({ $0 <= last }) {
                deliveryWaiters.removeValue(forKey: batch)?.values.forEach { $0.resume() }
            }
            heldBytesGauge.record(window.heldBytes)
        }
        while let next = admissionQueue.first, window.canAdmit(bytes: next.batch.byteCost) {
            admissionQueue.removeFirst()
            next.continuation.resume(returning: admit(next.batch))
        }
        if window.worthSending { wakeWriter() }
        return (true, isDrained)
    }

    private func streamLost() {
        closeWakeups()
        let requeued = window.streamLost()
        if requeued > 0 { resentCounter.increment(by: requeued) }
    }

    private func stop() {
        stopped = true
        closeWakeups()
        for waiter in admissionQueue { waiter.continuation.resume(throwing: ForwarderStopped()) }
        admissionQueue.removeAll()
        for waiters in deliveryWaiters.values { waiters.values.forEach { $0.resume(throwing: ForwarderStopped()) } }
        deliveryWaiters.removeAll()
    }

    // MARK: Service

    /// Keeps a stream open until graceful shutdown; then drains, for at most the drain timeout, and returns.
    public func run() async throws {
        defer { stop() }
        let drainTimeout = configuration.drainTimeout
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.connectionLoop() }
            group.addTask {
                // Waits for graceful shutdown (or cancellation), then bounds the drain.
                guard (try? await gracefulShutdown()) != nil else { return }
                self.beginDraining()
                guard (try? await Task.sleep(for: drainTimeout)) != nil else { return }
                self.logger.warning("UTMStack drain timed out; unacknowledged logs will be collected again")
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func connectionLoop() async {
        var backoff = Backoff(initial: configuration.initialBackoff, maximum: configuration.maxBackoff)
        var failures = 0
        while !Task.isCancelled && !isDrained {
            await waitForWork()
            if Task.isCancelled || isDrained { break }
            let wakeups = openWakeups()
            do {
                if try await stream(wakeups: wakeups, failuresBefore: failures) {
                    failures = 0
                    backoff.reset()
                }
            } catch where !Task.isCancelled {
                reconnectCounter.increment()
                failures += 1
                // One warning per outage; the retries after it go to debug.
                logger.log(
                    level: failures == 1 ? .warning : .debug, "UTMStack stream failed; retrying with backoff",
                    metadata: [
                        "error": "\(error)", "queued": "\(window.queued.count)", "inFlight": "\(window.inFlight.count)",
                        "failures": "\(failures)",
                    ])
            } catch {
                // Cancelled: the loop ends below.
            }
            streamLost()
            if isDrained || Task.isCancelled { break }
            try? await Task.sleep(for: backoff.next())
        }
    }

    /// One stream: writes whatever the window allows whenever woken, many logs to a write, and applies
    /// acknowledgements as they come. Returns whether anything was acknowledged on it; throws when it broke.
    private func stream(wakeups: AsyncStream<Void>, failuresBefore: Int) async throws -> Bool {
        let stream = try await EngineStream.open(configuration.endpoint, method: configuration.endpoint.logMethod)
        defer { stream.close() }
        return try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                for await _ in wakeups {
                    if await self.isDrained { break }
                    let outgoing = await self.takeForSending()
                    if outgoing.count > 0 { try await stream.send(outgoing.chunks) }
                }
                // Drained (or the stream is being torn down): half-close, so UTMStack ends the call.
                if !Task.isCancelled { try await stream.finish() }
                return nil
            }
            group.addTask {
                var acknowledged = false
                for try await ids in stream.acknowledgements {
                    let (applied, drained) = await self.acknowledge(ids)
                    if applied && !acknowledged {
                        acknowledged = true
                        if failuresBefore > 0 {
                            self.logger.notice("UTMStack stream re-established", metadata: ["failures": "\(failuresBefore)"])
                        }
                    }
                    if drained { await self.closeWakeups() }
                }
                return acknowledged
            }
            while let result = try await group.next() {
                if let acknowledged = result {
                    group.cancelAll()
                    return acknowledged
                }
            }
            return false
        }
    }
}
