import DequeModule
import Foundation
import GatewayCore
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// A promise that a submitted batch will be acknowledged by UTMStack (or its refused logs set aside); wait on it
/// with ``UTMStackForwarder/waitDelivered(_:)``.
public struct DeliveryTicket: Sendable, Hashable {
    let batch: UInt64
    /// A ticket for an empty batch, delivered from the start.
    public static let alreadyDelivered = DeliveryTicket(batch: 0)
}

public struct ForwarderStopped: Error, CustomStringConvertible {
    public var description: String { "the UTMStack forwarder stopped before the logs were acknowledged" }
}

/// Delivers logs to UTMStack over one long-lived gRPC stream (``EngineStream``), in order, and counts a log
/// delivered only when acknowledged. A stream that stops answering is given up and replaced (PING keepalive, a
/// deadline on acknowledgements); on a broken stream it reconnects with backoff and resends what was not
/// acknowledged; a GOAWAY is drained and followed by a new connection. A log the engine refuses for good is set
/// aside in the dead-letter store instead of blocking the others (docs/failure-handling.md). When the byte budget is
/// full, ``submit(_:)`` waits: collectors slow down, nothing is dropped.
public actor UTMStackForwarder: Service {
    let configuration: ForwarderConfiguration
    let deadLetters: any DeadLetterStore
    let logger: Logger
    private var window: DeliveryWindow
    private var admissionQueue = Deque<(key: UInt64, batch: OutboundBatch, continuation: CheckedContinuation<DeliveryTicket, any Error>)>()
    private var deliveryWaiters: [UInt64: [UInt64: CheckedContinuation<Void, any Error>]] = [:]
    private var nextWaiter: UInt64 = 0
    private var deliveredThrough: UInt64 = 0
    /// Wakes the writer of the current stream. Outside the actor so that graceful shutdown can wake it at once.
    private let wake = Mutex<AsyncStream<Void>.Continuation?>(nil)
    /// The connection loop waiting for the first logs to deliver (it connects only then).
    private let workWaiter = Mutex<CheckedContinuation<Void, Never>?>(nil)
    /// Refused logs on their way to the dead-letter store.
    private let refusals: (stream: AsyncStream<DeliveryWindow.Refusal>, continuation: AsyncStream<DeliveryWindow.Refusal>.Continuation)
    private var stopped = false
    private let draining = Mutex(false)
    /// The current stream: whether the engine sent a GOAWAY (since when), and when this side last sent a PING.
    private var goingAwaySince: ContinuousClock.Instant?
    private var lastPingAt: ContinuousClock.Instant?
    /// When UTMStack last acknowledged (or a refused log was settled): the destination's progress.
    private var lastProgressAt: ContinuousClock.Instant?
    /// Since when streams have failed with nothing acknowledged after (nil: the last stream worked, or none yet).
    private var failingSince: ContinuousClock.Instant?
    /// The last stream failure, in fixed words, for the destination's state (the log has the details).
    private var lastFailure: DestinationHealth.Failure?
    /// Whether a probe poll is admitted while the destination is unavailable (``admitPoll()``).
    private var probing = false
    /// Finished by ``retire()`` or graceful shutdown: the forwarder drains and stops.
    private let retirement = AsyncStream.makeStream(of: Void.self)
    /// Set by `retire()`: the destination changed, so no new batch is taken (what it holds still drains).
    private let retired = Atomic<Bool>(false)

    private let sentCounter: Counter
    private let deliveredCounter: Counter
    private let resentCounter: Counter
    private let reconnectCounter: Counter
    private let goAwayCounter: Counter
    private let heldBytesGauge: Gauge
    private let oldestGauge: Gauge
    private let connectedGauge: Gauge

    public init(configuration: ForwarderConfiguration, deadLetters: any DeadLetterStore, logger: Logger) {
        self.configuration = configuration
        self.deadLetters = deadLetters
        var logger = logger
        // Every line names the destination: with several UTMStack instances, which one failed matters.
        logger[metadataKey: "destination"] = "\(configuration.destination)"
        self.logger = logger
        self.window = DeliveryWindow(
            byteBudget: configuration.inFlightByteBudget, maxInFlight: configuration.maxInFlightLogs,
            maxMessageBytes: configuration.maxMessageBytes, maxAttempts: configuration.maxAttempts)
        self.refusals = AsyncStream.makeStream(of: DeliveryWindow.Refusal.self)
        // Every series carries the destination (docs/destinations.md).
        let destination = [("destination", configuration.destination)]
        self.sentCounter = Counter(label: "o365gw_utmstack_logs_sent_total", dimensions: destination)
        self.deliveredCounter = Counter(label: "o365gw_utmstack_logs_delivered_total", dimensions: destination)
        self.resentCounter = Counter(label: "o365gw_utmstack_logs_resent_total", dimensions: destination)
        self.reconnectCounter = Counter(label: "o365gw_utmstack_stream_failures_total", dimensions: destination)
        self.goAwayCounter = Counter(label: "o365gw_utmstack_goaways_total", dimensions: destination)
        self.heldBytesGauge = Gauge(label: "o365gw_utmstack_held_bytes", dimensions: destination)
        self.oldestGauge = Gauge(label: "o365gw_utmstack_oldest_unacknowledged_seconds", dimensions: destination)
        self.connectedGauge = Gauge(label: "o365gw_utmstack_connected", dimensions: destination)
    }

    // MARK: Collectors' side

    /// Queues a batch for delivery, in order. Waits while the byte budget is full (backpressure); cancelling the
    /// waiting task withdraws the batch.
    public func submit(_ batch: OutboundBatch) async throws -> DeliveryTicket {
        if stopped { throw ForwarderStopped() }
        if retired.load(ordering: .relaxed) { throw GatewayError.destinationChanged(configuration.destination) }
        if batch.isEmpty { return .alreadyDelivered }
        if admissionQueue.isEmpty && window.canAdmit(bytes: batch.byteCost) { return admit(batch) }
        nextWaiter += 1
        let key = nextWaiter
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                admissionQueue.append((key, batch, continuation))
            }
        } onCancel: {
            Task { await self.withdraw(key) }
        }
    }

    /// Encodes the logs (in the caller's task) and queues them for delivery, in order.
    public nonisolated func submit(_ logs: [OutboundLog]) async throws -> DeliveryTicket {
        try await submit(OutboundBatch(logs))
    }

    private func withdraw(_ key: UInt64) {
        guard let index = admissionQueue.firstIndex(where: { $0.key == key }) else { return }
        admissionQueue.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// Returns when every log of the ticket's batch (and of every batch before it) was acknowledged or set aside.
    /// Throws `CancellationError` when the waiting task is cancelled (the logs stay queued).
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

    /// How long the oldest log held (queued or awaiting its acknowledgement) has waited; zero when none is held.
    public var oldestUnacknowledgedAge: Duration { window.oldestHeldSince.map { .now - $0 } ?? .zero }

    // MARK: Isolation (docs/destinations.md)

    /// How long the destination has held logs without any progress: since the later of the last acknowledgement
    /// and the oldest batch still held; zero when nothing is held.
    public var stalledFor: Duration {
        guard let oldest = window.oldestHeldSince else { return .zero }
        return .now - max(oldest, lastProgressAt ?? oldest)
    }

    /// Whether the destination takes logs: no stream failure since its last acknowledgement, and no stall of
    /// `ackTimeout`.
    public var isAvailable: Bool { failingSince == nil && stalledFor < configuration.ackTimeout }

    /// What a poll was admitted as (``admitPoll()``).
    public enum PollAdmission: Sendable { case normal, probe }

    /// Whether a poll of one of this destination's tenants may start: always while it is available; while it is
    /// not, one poll at a time, the probe (its logs are what reconnects, and its acknowledgement what shows the
    /// destination is back). Nil: the poll must not start (its unit is degraded and retried with backoff), so a
    /// destination that is down holds at most one worker. End an admitted poll with ``pollEnded(_:)``.
    public func admitPoll() -> PollAdmission? {
        if isAvailable { return .normal }
        guard !probing else { return nil }
        probing = true
        return .probe
    }

    public func pollEnded(_ admission: PollAdmission) {
        if admission == .probe { probing = false }
    }

    /// The error a poll gives up with when this destination does not take its logs.
    public var unavailableError: GatewayError {
        let stalled = stalledFor
        let why = if stalled >= configuration.ackTimeout {
            "it acknowledged nothing for \(stalled.components.seconds) s"
        } else if let lastFailure {
            "its connection fails (\(lastFailure.rawValue))"
        } else {
            "it does not answer"
        }
        return .destinationUnavailable(configuration.destination, why)
    }

    /// Submits, giving up with ``unavailableError`` once the destination stalls (``stalledFor`` reaches
    /// `ackTimeout`) while the budget is full; the batch is then withdrawn.
    public func submitUnlessStalled(_ batch: OutboundBatch) async throws -> DeliveryTicket {
        if admissionQueue.isEmpty && window.canAdmit(bytes: batch.byteCost) || batch.isEmpty || stopped {
            return try await submit(batch)
        }
        return try await unlessStalled { try await self.submit(batch) }
    }

    /// Waits for the ticket, giving up with ``unavailableError`` once the destination stalls; the logs stay
    /// queued (``withdraw(_:)`` takes them back).
    public func waitDeliveredUnlessStalled(_ ticket: DeliveryTicket) async throws {
        if ticket.batch <= deliveredThrough || stopped { return try await waitDelivered(ticket) }
        try await unlessStalled { try await self.waitDelivered(ticket) }
    }

    private func unlessStalled<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let bound = configuration.ackTimeout
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while true {
                    try await Task.sleep(for: .milliseconds(250))
                    if await self.stalledFor >= bound { throw await self.unavailableError }
                }
            }
            defer { group.cancelAll() }
            guard let result = try await group.next() else { throw CancellationError() }
            return result!
        }
    }

    /// Takes back the queued logs of these tickets' batches (a poll that gave up on this destination collects
    /// them again later); logs in flight stay. Their batches then count as done: the caller must not commit them.
    public func withdraw(_ tickets: [DeliveryTicket]) {
        let batches = Set(tickets.map(\.batch).filter { $0 > deliveredThrough })
        let count = window.withdraw(batches)
        guard count > 0 else { return }
        logger.info(
            "logs withdrawn: UTMStack did not take them; they are collected again", metadata: ["count": "\(count)"])
        completeThrough(window.deliveredThrough)
        admitWaiting()
        heldBytesGauge.record(window.heldBytes)
    }

    /// Drains what it holds (within the drain timeout) and stops: the destination was changed or deleted.
    public nonisolated func retire() {
        retired.store(true, ordering: .relaxed)
        retirement.continuation.finish()
    }

    /// The destination's state now (this replica's view).
    public var health: DestinationHealth {
        let connection: DestinationHealth.Connection = if !isAvailable { .unavailable } else if connected { .connected } else { .idle }
        return DestinationHealth(
            connection: connection, heldBytes: window.heldBytes, oldestUnacknowledgedSeconds: oldestUnacknowledgedAge.seconds,
            lastFailure: failingSince == nil ? nil : lastFailure)
    }

    private var connected = false

    private func admit(_ batch: OutboundBatch) -> DeliveryTicket {
        let (id, refused) = window.enqueue(batch, now: .now)
        for refusal in refused { refusals.continuation.yield(refusal) }
        heldBytesGauge.record(window.heldBytes)
        wakeWriter()
        completeThrough(window.deliveredThrough)
        return DeliveryTicket(batch: id)
    }

    private func admitWaiting() {
        while let next = admissionQueue.first, window.canAdmit(bytes: next.batch.byteCost) {
            admissionQueue.removeFirst()
            next.continuation.resume(returning: admit(next.batch))
        }
    }

    /// Resumes the waiters of every batch up to `through`.
    private func completeThrough(_ through: UInt64) {
        guard through > deliveredThrough else { return }
        deliveredThrough = through
        for batch in deliveryWaiters.keys where batch <= through {
            deliveryWaiters.removeValue(forKey: batch)?.values.forEach { $0.resume() }
        }
        heldBytesGauge.record(window.heldBytes)
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
                    if window.needsStream || draining.withLock({ $0 }) || Task.isCancelled {
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

    private var isDrained: Bool { draining.withLock { $0 } && window.isIdle && admissionQueue.isEmpty }

    enum Write {
        case send(DeliveryWindow.Outgoing)
        case nothing
        /// Half-close the call: drained, or the engine sent a GOAWAY.
        case finish
    }

    /// What the writer does when woken.
    private func nextWrite() -> Write {
        if isDrained || goingAwaySince != nil { return .finish }
        let outgoing = window.takeForSending(now: .now)
        sentCounter.increment(by: outgoing.count)
        return outgoing.count > 0 ? .send(outgoing) : .nothing
    }

    /// Applies the acknowledgements of one read from the stream, in order (UTMStack sends one per log, so this is
    /// the hottest path; it runs once per read, not once per log): resumes waiters of completed batches, admits
    /// waiting submissions, and wakes the writer only when something waits to be sent. Returns whether it
    /// acknowledged anything and whether the forwarder is now drained.
    private func acknowledge(_ ids: [String]) -> (acknowledged: Bool, drained: Bool) {
        let now = ContinuousClock.now
        var delivered = 0
        for id in ids {
            let ack = window.acknowledge(id, now: now)
            if ack.delivered == 0 { logger.debug("acknowledgement for an id not in flight", metadata: ["lastId": "\(id)"]) }
            delivered += ack.delivered
        }
        guard delivered > 0 else { return (false, isDrained) }
        lastProgressAt = now
        failingSince = nil
        deliveredCounter.increment(by: delivered)
        completeThrough(window.deliveredThrough)
        admitWaiting()
        if window.worthSending { wakeWriter() }
        return (true, isDrained)
    }

    /// The engine sent a GOAWAY that covers the call: no new logs on it; the writer half-closes, the engine answers
    /// what it has and ends the call, and the next connection carries the rest.
    private func goAway() {
        guard goingAwaySince == nil else { return }
        goingAwaySince = .now
        goAwayCounter.increment()
        logger.info("UTMStack is closing the connection (GOAWAY); finishing the call and reconnecting")
        wakeWriter()
    }

    enum Deadline: Equatable {
        case fine
        case ping
        case expired(String)
    }

    /// The stream's deadlines, checked every few hundred milliseconds: logs in flight with no acknowledgement for
    /// `keepaliveInterval` ask for a PING (answered within `keepaliveTimeout` or the connection is given up); for
    /// `ackTimeout`, the stream is given up; a GOAWAY drain longer than `ackTimeout` too.
    private func checkDeadlines() -> Deadline {
        let now = ContinuousClock.now
        if let since = window.progressAt {
            let waited = now - since
            if waited >= configuration.ackTimeout {
                return .expired(
                    "UTMStack acknowledged nothing for \(configuration.ackTimeout) while \(window.inFlight.count) logs "
                        + "were in flight; giving up this connection")
            }
            if waited >= configuration.keepaliveInterval,
                lastPingAt.map({ now - $0 >= configuration.keepaliveInterval }) ?? true
            {
                lastPingAt = now
                return .ping
            }
        }
        if let since = goingAwaySince, now - since >= configuration.ackTimeout {
            return .expired("UTMStack did not end the call within \(configuration.ackTimeout) of its GOAWAY")
        }
        return .fine
    }

    /// The stream ended: what was in flight goes back to the queue. A call the engine ended for a log's fault
    /// isolates the log (``DeliveryWindow``): refused alone at its last strike, it is set aside. Any other failure
    /// blames no log: the destination is unavailable until it acknowledges again, and everything is sent again.
    private func streamLost(_ error: (any Error)?) {
        closeWakeups()
        goingAwaySince = nil
        lastPingAt = nil
        connected = false
        connectedGauge.record(0)
        let blame = (error as? EngineStreamError).flatMap { $0.blame == .theLog ? $0.description : nil }
        // A stream lost while it carried nothing (an idle connection closed) makes no destination unavailable, nor
        // does a log the engine refuses (the others go on).
        if let error, window.needsStream, blame == nil {
            if failingSince == nil { failingSince = .now }
            lastFailure = (error as? EngineStreamError)?.failure ?? .lost
        }
        let (requeued, refused) = window.streamLost(blame: blame)
        if requeued > 0 { resentCounter.increment(by: requeued) }
        if let refused { refusals.continuation.yield(refused) }
    }

    private func stop() {
        stopped = true
        closeWakeups()
        refusals.continuation.finish()
        for waiter in admissionQueue { waiter.continuation.resume(throwing: ForwarderStopped()) }
        admissionQueue.removeAll()
        for waiters in deliveryWaiters.values { waiters.values.forEach { $0.resume(throwing: ForwarderStopped()) } }
        deliveryWaiters.removeAll()
    }

    // MARK: Dead letters

    /// Sets refused logs aside, one at a time, retrying the store with backoff until it takes them; only then does
    /// a refused log count as done for its batch (so a collector never commits past a log that is nowhere).
    private func setAsideRefusals() async {
        for await refusal in refusals.stream {
            let letter = deadLetter(refusal)
            var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
            while true {
                do {
                    try await deadLetters.setAside(letter)
                    break
                } catch where !Task.isCancelled {
                    logger.warning(
                        "could not set a refused log aside; retrying", metadata: ["logId": "\(letter.logID)", "error": "\(error)"])
                    guard (try? await Task.sleep(for: backoff.next())) != nil else { return }
                } catch {
                    return
                }
            }
            Counter(
                label: "o365gw_utmstack_logs_dead_lettered_total",
                dimensions: [("destination", configuration.destination), ("reason", letter.reason)]
            ).increment()
            logger.warning(
                "log set aside: UTMStack refused it",
                metadata: [
                    "tenant": "\(letter.tenant.map { "\($0)" } ?? "-")", "contentId": "\(letter.contentID ?? "-")",
                    "recordId": "\(letter.recordID ?? "-")", "logId": "\(letter.logID)", "reason": "\(letter.reason)",
                    "detail": "\(letter.detail)",
                ])
            settle(refusal)
        }
    }

    private func settle(_ refusal: DeliveryWindow.Refusal) {
        lastProgressAt = .now
        window.settle(refusal)
        completeThrough(window.deliveredThrough)
        admitWaiting()
    }

    func deadLetter(_ refusal: DeliveryWindow.Refusal) -> DeadLetter {
        let message = Array(refusal.message.readableBytesView)
        let recordID = GRPCWire.logFields(message)?.raw.flatMap { raw -> String? in
            let object = try? JSONSerialization.jsonObject(with: Data(raw.utf8), options: [.fragmentsAllowed])
            return (object as? [String: Any])?["Id"] as? String
        }
        return DeadLetter(
            tenant: refusal.origin?.tenant, contentType: refusal.origin?.contentType, contentID: refusal.origin?.contentID,
            logID: refusal.entry.id, recordID: recordID, reason: refusal.reason, detail: refusal.detail, message: message,
            destination: configuration.destination)
    }

    // MARK: Service

    /// Keeps a stream open until graceful shutdown; then drains, for at most the drain timeout, and returns.
    public func run() async throws {
        defer { stop() }
        let drainTimeout = configuration.drainTimeout
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.connectionLoop() }
            group.addTask { await self.setAsideRefusals() }
            group.addTask {
                while (try? await Task.sleep(for: .seconds(1))) != nil { await self.recordAge() }
            }
            group.addTask {
                // Waits for graceful shutdown or retirement (or cancellation), then bounds the drain.
                await withGracefulShutdownHandler {
                    for await _ in self.retirement.stream {}
                } onGracefulShutdown: {
                    self.retirement.continuation.finish()
                }
                guard !Task.isCancelled else { return }
                self.beginDraining()
                guard (try? await Task.sleep(for: drainTimeout)) != nil else { return }
                self.logger.warning("UTMStack drain timed out; unacknowledged logs will be collected again")
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func markConnected() {
        connected = true
        connectedGauge.record(1)
    }

    private func recordAge() {
        oldestGauge.record(oldestUnacknowledgedAge.seconds)
    }

    private func connectionLoop() async {
        var backoff = Backoff(initial: configuration.initialBackoff, maximum: configuration.maxBackoff)
        var failures = 0
        while !Task.isCancelled && !isDrained {
            await waitForWork()
            if Task.isCancelled || isDrained { break }
            let wakeups = openWakeups()
            var failure: (any Error)?
            do {
                if try await stream(wakeups: wakeups, failuresBefore: failures) {
                    failures = 0
                    backoff.reset()
                }
            } catch where !Task.isCancelled {
                failure = error
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
            streamLost(failure)
            if isDrained || Task.isCancelled { break }
            // After a normal end (a GOAWAY drained) or a call ended for a log's fault (isolating it takes a call per
            // step) the next connection follows at once, else after the backoff.
            let blamesALog = (failure as? EngineStreamError)?.blame == .theLog
            try? await Task.sleep(for: failure == nil || blamesALog ? configuration.initialBackoff : backoff.next())
        }
    }

    /// One stream: writes whatever the window allows whenever woken, many logs to a write, applies
    /// acknowledgements as they come, and watches the deadlines. Returns whether anything was acknowledged on it
    /// when the engine ended the call normally (drained, or after a GOAWAY); throws when it broke.
    private func stream(wakeups: AsyncStream<Void>, failuresBefore: Int) async throws -> Bool {
        let stream = try await EngineStream.open(
            configuration.endpoint, method: configuration.endpoint.logMethod, connectTimeout: configuration.connectTimeout)
        defer { stream.close() }
        markConnected()
        let keepaliveTimeout = configuration.keepaliveTimeout
        return try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                writing: for await _ in wakeups {
                    switch await self.nextWrite() {
                    case .send(let outgoing): try await stream.send(outgoing.chunks)
                    case .nothing: continue
                    case .finish: break writing
                    }
                }
                // Drained, or told to go away: half-close, so UTMStack ends the call once it has answered.
                if !Task.isCancelled { try await stream.finish() }
                return nil
            }
            group.addTask {
                var acknowledged = false
                for try await event in stream.events {
                    switch event {
                    case .acknowledged(let ids):
                        let (applied, drained) = await self.acknowledge(ids)
                        if applied && !acknowledged {
                            acknowledged = true
                            if failuresBefore > 0 {
                                self.logger.notice("UTMStack stream re-established", metadata: ["failures": "\(failuresBefore)"])
                            }
                        }
                        if drained { await self.closeWakeups() }
                    case .goingAway:
                        await self.goAway()
                    }
                }
                return acknowledged
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: .milliseconds(250))
                    switch await self.checkDeadlines() {
                    case .fine: continue
                    case .ping: stream.ping(timeout: keepaliveTimeout)
                    case .expired(let reason): throw EngineStreamError(description: reason, failure: .timedOut)
                    }
                }
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
