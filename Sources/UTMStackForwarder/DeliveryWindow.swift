import DequeModule
import NIOCore

/// The bookkeeping of delivery to UTMStack, without I/O: what waits to be sent, what is in flight on the current
/// stream, which batches are done, how many bytes are held (the memory budget), how long the oldest log in flight
/// has gone without progress, and which logs UTMStack refuses for good. Time is passed in.
///
/// Rules:
/// - Logs are sent in the order they were enqueued.
/// - An acknowledgement of id X on a stream delivers X and everything sent before it on that stream.
/// - When a stream is lost, what was in flight goes back to the front of the queue, in order, to be sent again.
/// - A log over `maxMessageBytes` is never sent: it is refused at once (the engine would refuse it; grpc-go's limit
///   is 4 MiB).
/// - A call ended for a log's fault (``CallEndBlame/theLog``) is isolated: the logs it left unacknowledged are the
///   suspects, one of them the culprit. They go in groups, one group at a time, each half the size of the
///   unacknowledged part of the last group refused, down to one log alone; acknowledged suspects are innocent. A log
///   refused alone `maxAttempts` times is refused for good, and the suspects after it go on together again. A call
///   ended for the destination's fault (a lost connection, an engine failing) blames no log: everything is sent
///   again, isolation included, and nothing is refused for it. A refused log leaves the stream (the others go on)
///   and is handed to the forwarder, which sets it aside and then settles it.
/// - A batch is done when each of its logs is acknowledged or refused and settled; batches are done in order, and
///   `deliveredThrough` is the last batch done with every batch before it.
/// - Held bytes (queued, in flight, or refused and not yet settled) stay within the budget, except that one batch
///   larger than the budget is admitted when nothing else is held (else it could never be sent).
///
/// Logs arrive encoded (``OutboundBatch``); the window tracks each by id and position and hands the writer slices
/// of the batches' buffers, one per run of consecutive logs.
struct DeliveryWindow {
    typealias BatchID = UInt64
    typealias Instant = ContinuousClock.Instant

    /// What a log costs beyond its encoded bytes while held (its entry and id).
    static let entryOverhead = 64

    struct Entry {
        var id: String
        var batch: BatchID
        /// The log's message in its batch's buffer.
        var start: Int
        var end: Int
        var bytes: Int { end - start + DeliveryWindow.entryOverhead }
    }

    /// What to write now: `count` logs as consecutive slices of their batches' buffers.
    struct Outgoing {
        var count = 0
        var chunks: [ByteBuffer] = []
    }

    /// A log taken out of delivery for good: the forwarder sets it aside durably, then calls ``settle(_:)``.
    struct Refusal {
        var entry: Entry
        /// The log's encoded, length-prefixed message.
        var message: ByteBuffer
        var origin: LogOrigin?
        /// `message_too_large` or `refused_by_engine`.
        var reason: String
        var detail: String
    }

    private struct Batch {
        var buffer: ByteBuffer
        /// Logs neither acknowledged nor settled.
        var remaining: Int
        /// The bytes its buffer holds beyond its logs (allocations are rounded up), freed with the batch.
        var slack: Int
        var origin: LogOrigin?
        var enqueuedAt: Instant
    }

    let byteBudget: Int
    let maxInFlight: Int
    let maxMessageBytes: Int
    let maxAttempts: Int
    private(set) var queued = Deque<Entry>()
    private(set) var inFlight = Deque<Entry>()
    private(set) var heldBytes = 0
    private(set) var highWaterBytes = 0
    /// The batches not yet done and the done ones after them, by id from `deliveredThrough + 1` (nil: done or
    /// empty). Ids are consecutive, so a batch is found by its offset and updated in place: acknowledgements touch
    /// it once per log.
    private var batches = Deque<Batch?>()
    private var nextBatch: BatchID = 1
    /// Every batch up to this one is done.
    private(set) var deliveredThrough: BatchID = 0
    /// Refused logs handed to the forwarder and not yet settled.
    private(set) var unsettled = 0
    /// Since when the oldest log in flight has waited without an acknowledgement of anything (nil: none in flight).
    private(set) var progressAt: Instant?
    /// The isolation of a log the engine refuses (nil: none under way).
    private(set) var isolation: Isolation?

    struct Isolation: Equatable {
        /// The logs at the front (in flight, then queued) among which is the one the engine refuses.
        var suspects: Int
        /// How many of them go at a time.
        var groupSize: Int
        /// How many calls the engine ended on the first suspect sent alone.
        var strikes = 0
    }

    init(byteBudget: Int, maxInFlight: Int, maxMessageBytes: Int = .max, maxAttempts: Int = 3) {
        precondition(byteBudget > 0 && maxInFlight > 0 && maxMessageBytes > 0 && maxAttempts > 0)
        self.byteBudget = byteBudget
        self.maxInFlight = maxInFlight
        self.maxMessageBytes = maxMessageBytes
        self.maxAttempts = maxAttempts
    }

    /// Whether a batch of `bytes` may be enqueued now.
    func canAdmit(bytes: Int) -> Bool { heldBytes == 0 || heldBytes + bytes <= byteBudget }

    /// Whether logs wait to be sent or acknowledged (a stream is needed).
    var needsStream: Bool { !queued.isEmpty || !inFlight.isEmpty }

    /// Whether nothing is held at all.
    var isIdle: Bool { !needsStream && unsettled == 0 }

    /// Whether the writer should be woken after an acknowledgement: logs wait and at least a quarter of the window
    /// is free. Waking it for every freed slot would write one message per flush when the window is saturated.
    var worthSending: Bool { !queued.isEmpty && inFlight.count <= maxInFlight - max(1, maxInFlight / 4) }

    /// When the oldest batch not yet done was enqueued (nil: nothing held).
    var oldestHeldSince: Instant? { batches.first??.enqueuedAt }

    private func slot(_ batch: BatchID) -> Int { Int(batch - deliveredThrough - 1) }

    /// Enqueues a batch (the caller checked ``canAdmit(bytes:)``). Logs over `maxMessageBytes` are refused at once
    /// and returned, to be set aside and settled.
    mutating func enqueue(_ batch: OutboundBatch, now: Instant) -> (batch: BatchID, refused: [Refusal]) {
        let id = nextBatch
        nextBatch += 1
        guard !batch.isEmpty else {
            batches.append(nil)
            advanceDelivered()
            return (id, [])
        }
        var refused: [Refusal] = []
        var start = 0
        for (logID, end) in zip(batch.ids, batch.ends) {
            let entry = Entry(id: logID, batch: id, start: start, end: end)
            start = end
            if end - entry.start > maxMessageBytes {
                refused.append(Refusal(
                    entry: entry, message: batch.buffer.getSlice(at: batch.buffer.readerIndex + entry.start, length: end - entry.start)!,
                    origin: batch.origin, reason: "message_too_large",
                    detail: "the log is \(end - entry.start) bytes, over the engine's limit of \(maxMessageBytes) bytes"))
            } else {
                queued.append(entry)
            }
        }
        unsettled += refused.count
        batches.append(Batch(
            buffer: batch.buffer, remaining: batch.count, slack: batch.buffer.capacity - batch.buffer.readableBytes,
            origin: batch.origin, enqueuedAt: now))
        heldBytes += batch.byteCost
        highWaterBytes = max(highWaterBytes, heldBytes)
        return (id, refused)
    }

    /// Moves up to the window's free room from the queue to in flight and returns their bytes to send. While a
    /// refused log is being isolated, suspects go one group at a time.
    mutating func takeForSending(now: Instant) -> Outgoing {
        var outgoing = Outgoing()
        var room = maxInFlight - inFlight.count
        if let isolation {
            guard inFlight.isEmpty else { return outgoing }
            room = min(room, isolation.groupSize, isolation.suspects)
        }
        guard room > 0, !queued.isEmpty else { return outgoing }
        if inFlight.isEmpty { progressAt = now }
        var run: (batch: BatchID, start: Int, end: Int)?
        func flush(_ run: (batch: BatchID, start: Int, end: Int)?) {
            guard let run, let buffer = batches[slot(run.batch)]?.buffer else { return }
            outgoing.chunks.append(buffer.getSlice(at: buffer.readerIndex + run.start, length: run.end - run.start)!)
        }
        while outgoing.count < room, let entry = queued.popFirst() {
            inFlight.append(entry)
            outgoing.count += 1
            if let current = run, current.batch == entry.batch, current.end == entry.start {
                run = (current.batch, current.start, entry.end)
            } else {
                flush(run)
                run = (entry.batch, entry.start, entry.end)
            }
        }
        flush(run)
        return outgoing
    }

    struct Acknowledgement: Equatable {
        var delivered: Int
        var freedBytes: Int
    }

    /// Applies `Ack.lastId`: delivers everything in flight up to and including the first log with that id.
    /// An id not in flight (a late or repeated acknowledgement) delivers nothing.
    mutating func acknowledge(_ lastID: String, now: Instant) -> Acknowledgement {
        guard let index = inFlight.firstIndex(where: { $0.id == lastID }) else {
            return Acknowledgement(delivered: 0, freedBytes: 0)
        }
        var freed = 0
        for _ in 0...index {
            freed += finish(inFlight.removeFirst())
            if var isolation {
                // An innocent suspect: the next one is first, with no strike.
                isolation.suspects -= 1
                isolation.strikes = 0
                self.isolation = isolation.suspects > 0 ? isolation : nil
            }
        }
        progressAt = inFlight.isEmpty ? nil : now
        advanceDelivered()
        return Acknowledgement(delivered: index + 1, freedBytes: freed)
    }

    /// The stream broke: what was in flight is queued again, first, in its original order. `blame` is the engine's
    /// refusal when the call ended for a log's fault (``CallEndBlame/theLog``): the logs left in flight become the
    /// suspects, to be sent in groups of half as many; the only one, sent alone, takes a strike, and is returned as
    /// refused at its `maxAttempts`-th. Without `blame` nothing changes but the resending.
    mutating func streamLost(blame: String? = nil) -> (requeued: Int, refused: Refusal?) {
        progressAt = nil
        var refused: Refusal?
        if let blame, let head = inFlight.first {
            if var isolation, isolation.groupSize == 1, inFlight.count == 1 {
                isolation.strikes += 1
                self.isolation = isolation
                if isolation.strikes >= maxAttempts {
                    inFlight.removeFirst()
                    self.isolation = nil
                    unsettled += 1
                    let batch = batches[slot(head.batch)]!
                    refused = Refusal(
                        entry: head,
                        message: batch.buffer.getSlice(at: batch.buffer.readerIndex + head.start, length: head.end - head.start)!,
                        origin: batch.origin, reason: "refused_by_engine",
                        detail: "UTMStack ended the call on this log, sent alone, \(isolation.strikes) times, the last with \(blame)")
                }
            } else {
                isolation = Isolation(suspects: inFlight.count, groupSize: max(1, inFlight.count / 2))
            }
        }
        let count = inFlight.count
        while let entry = inFlight.popLast() { queued.prepend(entry) }
        return (count, refused)
    }

    /// A refused log was set aside: it counts as done for its batch.
    mutating func settle(_ refusal: Refusal) {
        unsettled -= 1
        _ = finish(refusal.entry)
        advanceDelivered()
    }

    /// Takes the queued logs of `withdrawn` out of delivery, unsent: a poll that gave up on its destination takes
    /// them back, to collect them again later (its checkpoint did not pass them), so they are not sent twice. Logs
    /// already in flight stay (they may have arrived). The withdrawn logs count as done for their batches, as a
    /// settled refusal does; the caller must not take those batches for delivered. Returns how many were withdrawn.
    mutating func withdraw(_ withdrawn: Set<BatchID>) -> Int {
        guard !withdrawn.isEmpty else { return 0 }
        var kept = Deque<Entry>()
        var taken: [Entry] = []
        // Suspects not in flight are at the front of the queue; those withdrawn are suspects no more.
        let queuedSuspects = isolation.map { $0.suspects - inFlight.count } ?? 0
        var withdrawnSuspects = 0
        for (position, entry) in queued.enumerated() {
            if withdrawn.contains(entry.batch) {
                taken.append(entry)
                if position < queuedSuspects { withdrawnSuspects += 1 }
            } else {
                kept.append(entry)
            }
        }
        guard !taken.isEmpty else { return 0 }
        queued = kept
        if var isolation, withdrawnSuspects > 0 {
            // The strikes may have been the withdrawn log's: the first suspect starts again.
            isolation.suspects -= withdrawnSuspects
            isolation.strikes = 0
            self.isolation = isolation.suspects > 0 ? isolation : nil
        }
        for entry in taken { _ = finish(entry) }
        advanceDelivered()
        return taken.count
    }

    /// One log of a batch is done; frees its bytes (and the batch's slack with its last log).
    private mutating func finish(_ entry: Entry) -> Int {
        var freed = entry.bytes
        let index = slot(entry.batch)
        batches[index]!.remaining -= 1
        if batches[index]!.remaining == 0 {
            freed += batches[index]!.slack
            batches[index] = nil
        }
        heldBytes -= freed
        return freed
    }

    private mutating func advanceDelivered() {
        while let first = batches.first, first == nil {
            batches.removeFirst()
            deliveredThrough += 1
        }
    }
}
