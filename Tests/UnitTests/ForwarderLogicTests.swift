import Foundation
import GatewayCore
import Testing
import UTMStackProtocol

@testable import UTMStackForwarder

@Suite struct EventShaperTests {
    @Test(arguments: [
        ("2015-06-29T20:03:19", "2015-06-29T20:03:19Z"),
        ("2015-06-29T20:03:19.1234567", "2015-06-29T20:03:19.1234567Z"),
        ("2015-06-29T20:03:19Z", "2015-06-29T20:03:19Z"),
        ("2015-06-29T20:03:19.5Z", "2015-06-29T20:03:19.5Z"),
        ("2015-06-29T20:03:19+00:00", "2015-06-29T20:03:19Z"),
        ("2015-06-29T22:03:19.25+02:00", "2015-06-29T20:03:19.25Z"),
        ("2015-12-31T23:30:00-01:00", "2016-01-01T00:30:00Z"),
        ("2016-03-01T00:10:00+01:00", "2016-02-29T23:10:00Z"),
        ("2015-06-29 20:03:19", "2015-06-29T20:03:19Z"),
    ])
    func creationTimeBecomesRFC3339UTC(_ input: String, _ expected: String) {
        #expect(EventShaper.timestamp(input) == expected)
    }

    @Test(arguments: ["", "yesterday", "2015-06-29", "2015-13-29T20:03:19", "2015-06-29T20:03:19.", "2015-06-29T20:03:19+2",
                      "2015-06-29T20:03:19Zjunk", "2015-06-29T25:03:19"])
    func unreadableTimestampsAreRejected(_ input: String) {
        #expect(EventShaper.timestamp(input) == nil)
    }

    @Test func idsAreStablePerTenantAndRecord() {
        let tenant = TenantID(UUID(uuidString: "6ba7b810-9dad-11d1-80b4-00c04fd430c8")!)
        let a = EventShaper.logID(tenant: tenant, recordID: "80c76bd2-9d81-4c57-a97a-accfc3443dca")
        #expect(a == EventShaper.logID(tenant: tenant, recordID: "80c76bd2-9d81-4c57-a97a-accfc3443dca"))
        #expect(a != EventShaper.logID(tenant: TenantID(), recordID: "80c76bd2-9d81-4c57-a97a-accfc3443dca"))
        #expect(a != EventShaper.logID(tenant: tenant, recordID: "80c76bd2-9d81-4c57-a97a-accfc3443dcb"))
        // A version-5 UUID (RFC 9562): version nibble 5, variant 10xx.
        let uuid = try! #require(UUID(uuidString: a))
        #expect(uuid.uuid.6 >> 4 == 5 && uuid.uuid.8 >> 6 == 2)
        #expect(a == a.lowercased())
        // Pinned: the id must never change between releases, or UTMStack would see re-sent records as new.
        // Pinned to Python's uuid.uuid5 (an independent implementation): the id must never change between
        // releases, or UTMStack would see re-sent records as new ones.
        #expect(a == "e89ad4c2-da0d-5cf5-9330-ce28f0f25842")
    }

    @Test func rawBytesAndRouteFieldsAreKept() {
        let raw = #"{"Id":"x","CreationTime":"2024-01-02T03:04:05","Big":123456789012345678901234567890,"é":"\u00e9","Z":1,"A":2}"#
        let route = TenantRoute(tenantID: TenantID(), utmTenantID: "utm-1", dataSource: "Contoso")
        let log = EventShaper.log(
            AuditRecord(id: "x", creationTime: "2024-01-02T03:04:05", raw: raw), route: route,
            fallbackTimestamp: "2024-01-02T05:00:00.000Z")
        #expect(Array(log.raw.utf8) == Array(raw.utf8))
        #expect(log.dataType == "o365" && log.tenantID == "utm-1" && log.dataSource == "Contoso")
        #expect(log.timestamp == "2024-01-02T03:04:05Z")
        let noTime = EventShaper.log(
            AuditRecord(id: "x", creationTime: "", raw: raw), route: route, fallbackTimestamp: "2024-01-02T05:00:00.000Z")
        #expect(noTime.timestamp == "2024-01-02T05:00:00.000Z")
    }
}

@Suite struct DeliveryWindowTests {
    func batch(_ ids: [String], size: Int = 100) -> OutboundBatch {
        OutboundBatch(ids.map {
            OutboundLog(id: $0, dataType: "o365", dataSource: "d", timestamp: "t", tenantID: "u",
                        raw: String(repeating: "x", count: size))
        })
    }

    /// The ids of the logs in the bytes the writer would send, read back with swift-protobuf.
    func sentIDs(_ outgoing: DeliveryWindow.Outgoing) throws -> [String] {
        var ids: [String] = []
        for var chunk in outgoing.chunks {
            while chunk.readableBytes > 0 {
                chunk.moveReaderIndex(forwardBy: 1)
                let length = Int(chunk.readInteger(as: UInt32.self)!)
                ids.append(try Plugins_Log(serializedBytes: chunk.readBytes(length: length)!).id)
            }
        }
        #expect(ids.count == outgoing.count)
        return ids
    }

    let t0 = ContinuousClock.now

    @Test func aSaturatedWindowWakesTheWriterOnlyForAQuarterOfItsRoom() {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 8)
        _ = window.enqueue(batch((0..<20).map(String.init)), now: t0)
        #expect(window.takeForSending(now: t0).count == 8)
        #expect(!window.worthSending, "full window")
        _ = window.acknowledge("0", now: t0)
        #expect(!window.worthSending, "one free slot is not worth a write")
        _ = window.acknowledge("1", now: t0)
        #expect(window.worthSending, "a quarter free")
        #expect(window.takeForSending(now: t0).count == 2)
        for id in 2..<10 { _ = window.acknowledge(String(id), now: t0) }
        #expect(window.worthSending)
        #expect(window.takeForSending(now: t0).count == 8)
        for id in 10..<18 { _ = window.acknowledge(String(id), now: t0) }
        #expect(window.takeForSending(now: t0).count == 2)
        for id in 18..<20 { _ = window.acknowledge(String(id), now: t0) }
        #expect(!window.worthSending, "nothing waits")
    }

    @Test func acknowledgementsAreCumulativeAndCompleteBatchesInOrder() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10)
        let (b1, _) = window.enqueue(batch(["a", "b"]), now: t0)
        let (b2, _) = window.enqueue(batch(["c"]), now: t0)
        let outgoing = window.takeForSending(now: t0)
        #expect(try sentIDs(outgoing) == ["a", "b", "c"])
        #expect(outgoing.chunks.count == 2, "one slice per batch")
        let first = window.acknowledge("a", now: t0)
        #expect(first.delivered == 1 && window.deliveredThrough == b1 - 1)
        #expect(first.freedBytes < batch(["a"]).byteCost, "a log's own bytes; its batch's slack goes with the batch")
        let ack = window.acknowledge("c", now: t0)
        #expect(ack.delivered == 2 && window.deliveredThrough == b2)
        #expect(window.isIdle && window.heldBytes == 0)
        #expect(window.acknowledge("c", now: t0).delivered == 0, "a repeated ack delivers nothing")
    }

    @Test func aLostStreamResendsInOriginalOrder() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 2)
        _ = window.enqueue(batch(["a", "b", "c", "d"]), now: t0)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["a", "b"])
        #expect(window.takeForSending(now: t0).chunks.isEmpty, "window full")
        _ = window.acknowledge("a", now: t0)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["c"])
        #expect(window.streamLost().requeued == 2)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["b", "c"])
        _ = window.acknowledge("c", now: t0)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["d"])
        _ = window.acknowledge("d", now: t0)
        #expect(window.deliveredThrough == 1)
    }

    /// A poll that gives up on its destination takes back its unsent logs: the queued ones of its batches leave
    /// (their bytes freed, their batches done without counting as acknowledged), in-flight ones and other polls'
    /// stay, and the order of what stays is kept.
    @Test func withdrawnBatchesLeaveTheQueueButNotTheStream() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 2)
        let (mine, _) = window.enqueue(batch(["a", "b", "c"]), now: t0)
        let (theirs, _) = window.enqueue(batch(["x", "y"]), now: t0)
        let (mineToo, _) = window.enqueue(batch(["d"]), now: t0)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["a", "b"])
        let held = window.heldBytes
        #expect(window.withdraw([mine, mineToo]) == 2, "c and d were queued; a and b are in flight")
        #expect(window.heldBytes < held)
        #expect(window.deliveredThrough == 0, "a and b still wait for their acknowledgement")
        _ = window.acknowledge("b", now: t0)
        #expect(window.deliveredThrough == mine)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["x", "y"], "the other poll's logs go on, in order")
        _ = window.acknowledge("y", now: t0)
        #expect(window.deliveredThrough == mineToo && window.isIdle && window.heldBytes == 0)
        #expect(theirs < mineToo && window.withdraw([theirs]) == 0, "nothing left to withdraw")
    }

    @Test func theByteBudgetBoundsWhatIsHeld() {
        var window = DeliveryWindow(byteBudget: 1000, maxInFlight: 100)
        let three = batch(["a", "b", "c"], size: 200)
        #expect(window.canAdmit(bytes: three.byteCost))
        _ = window.enqueue(three, now: t0)
        #expect(!window.canAdmit(bytes: three.byteCost), "a second batch would exceed the budget")
        _ = window.takeForSending(now: t0)
        _ = window.acknowledge("c", now: t0)
        #expect(window.canAdmit(bytes: three.byteCost))
        let huge = batch(["h"], size: 5000)
        #expect(window.canAdmit(bytes: huge.byteCost), "an oversized batch is admitted when nothing is held")
        _ = window.enqueue(huge, now: t0)
        #expect(!window.canAdmit(bytes: 1))
        #expect(window.highWaterBytes == huge.byteCost)
    }

    /// The deadline's clock: the oldest log in flight waits from when it was sent or from the last acknowledgement
    /// of anything, whichever is later, so a slow engine that keeps acknowledging is never given up.
    @Test func progressIsTheLaterOfSendingAndTheLastAcknowledgement() {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10)
        _ = window.enqueue(batch(["a", "b", "c"]), now: t0)
        #expect(window.progressAt == nil, "nothing in flight")
        _ = window.takeForSending(now: t0 + .seconds(1))
        #expect(window.progressAt == t0 + .seconds(1))
        _ = window.acknowledge("a", now: t0 + .seconds(20))
        #expect(window.progressAt == t0 + .seconds(20))
        _ = window.acknowledge("zz", now: t0 + .seconds(25))
        #expect(window.progressAt == t0 + .seconds(20), "an unknown id is no progress")
        _ = window.acknowledge("c", now: t0 + .seconds(30))
        #expect(window.progressAt == nil)
        #expect(window.oldestHeldSince == nil)
    }

    /// A log over the engine's limit is never sent: it is refused at once, the others of its batch go on, and the
    /// batch is done only once the refused log is settled (set aside).
    @Test func aLogOverTheMessageLimitIsRefusedWithoutBlockingItsBatch() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10, maxMessageBytes: 500)
        var mixed = batch(["a"])
        mixed.append(OutboundLog(id: "big", dataType: "o365", dataSource: "d", timestamp: "t", tenantID: "u", raw: String(repeating: "y", count: 800)))
        mixed.append(OutboundLog(id: "c", dataType: "o365", dataSource: "d", timestamp: "t", tenantID: "u", raw: "{}"))
        let (id, refused) = window.enqueue(mixed, now: t0)
        #expect(refused.map(\.entry.id) == ["big"] && refused.first?.reason == "message_too_large")
        #expect(try Plugins_Log(serializedBytes: Array(refused[0].message.readableBytesView.dropFirst(5))).id == "big")
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["a", "c"])
        _ = window.acknowledge("c", now: t0)
        #expect(window.deliveredThrough == id - 1, "not done while the refused log is not set aside")
        #expect(!window.isIdle && !window.needsStream)
        window.settle(refused[0])
        #expect(window.deliveredThrough == id && window.isIdle && window.heldBytes == 0)
    }

    /// The engine ends the call on a log: the logs left in flight are the suspects; with a call of three, they go
    /// one at a time; the first, refused alone `maxAttempts` times, is refused while the rest goes on together.
    @Test func aLogTheEngineKeepsRefusingIsIsolatedThenRefused() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10, maxAttempts: 3)
        let (c1, _) = window.enqueue(batch(["a", "poison", "c"]), now: t0)
        let (c2, _) = window.enqueue(batch(["d"]), now: t0)
        _ = window.takeForSending(now: t0)
        _ = window.acknowledge("a", now: t0)
        // The call ends with poison, c and d in flight: three suspects, sent one at a time.
        #expect(window.streamLost(blame: "INVALID_ARGUMENT").refused == nil)
        #expect(window.isolation == DeliveryWindow.Isolation(suspects: 3, groupSize: 1))
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["poison"], "the first suspect goes alone")
        #expect(window.takeForSending(now: t0).count == 0, "nothing beside it")
        // A lost connection is no strike.
        #expect(window.streamLost().refused == nil)
        #expect(window.isolation?.strikes == 0)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["poison"])
        #expect(window.streamLost(blame: "INVALID_ARGUMENT").refused == nil)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["poison"])
        #expect(window.streamLost(blame: "INVALID_ARGUMENT").refused == nil)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["poison"])
        let refused = try #require(window.streamLost(blame: "INVALID_ARGUMENT: no").refused)
        #expect(refused.entry.id == "poison" && refused.reason == "refused_by_engine" && refused.detail.contains("INVALID_ARGUMENT: no"))
        #expect(window.isolation == nil)
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["c", "d"], "the rest goes on, together again")
        _ = window.acknowledge("d", now: t0)
        #expect(window.deliveredThrough == c1 - 1)
        window.settle(refused)
        #expect(window.deliveredThrough == c2 && window.isIdle)
    }

    @Test func anInnocentSuspectIsClearedByItsAcknowledgement() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10)
        _ = window.enqueue(batch(["a", "b"]), now: t0)
        _ = window.takeForSending(now: t0)
        _ = window.streamLost(blame: "INVALID_ARGUMENT")
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["a"])
        _ = window.acknowledge("a", now: t0)
        #expect(window.isolation == DeliveryWindow.Isolation(suspects: 1, groupSize: 1))
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["b"])
        _ = window.acknowledge("b", now: t0)
        #expect(window.isolation == nil, "every suspect was innocent (the engine took them all)")
    }

    /// An engine that refuses a whole call for one log and acknowledges none of it (the worst case): the suspects
    /// are halved until the log is alone, so only it is refused, in about log2(window) + `maxAttempts` calls, and
    /// every other log is delivered once, in order.
    @Test(arguments: [0, 5, 37, 63])
    func halvingFindsTheOnlyLogTheEngineRefuses(_ poison: Int) throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 64, maxAttempts: 3)
        let ids = (0..<100).map { "log\($0)" }
        let (last, _) = window.enqueue(batch(ids), now: t0)
        var delivered: [String] = []
        var refused: [DeliveryWindow.Refusal] = []
        var calls = 0
        while window.needsStream {
            calls += 1
            #expect(calls < 40)
            guard calls < 40 else { break }
            // One call: everything the window allows, group after group, until the engine ends it.
            while true {
                let sent = try sentIDs(window.takeForSending(now: t0))
                if sent.isEmpty { break }
                if sent.contains("log\(poison)") {
                    if let lost = window.streamLost(blame: "INVALID_ARGUMENT").refused { refused.append(lost) }
                    break
                }
                _ = window.acknowledge(sent.last!, now: t0)
                delivered += sent
            }
        }
        #expect(refused.map(\.entry.id) == ["log\(poison)"])
        #expect(delivered == ids.filter { $0 != "log\(poison)" }, "the others once, in order")
        #expect(calls <= 1 + 7 + 3, "\(calls) calls")
        refused.forEach { window.settle($0) }
        #expect(window.deliveredThrough == last && window.isIdle)
    }

    /// An engine failing for a while (every call ended for the destination's fault) refuses no log, however often.
    @Test func callsEndedForTheDestinationsFaultRefuseNothing() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10, maxAttempts: 3)
        _ = window.enqueue(batch(["a", "b", "c"]), now: t0)
        for _ in 0..<50 {
            #expect(try sentIDs(window.takeForSending(now: t0)) == ["a", "b", "c"])
            let lost = window.streamLost()
            #expect(lost.requeued == 3 && lost.refused == nil)
        }
        #expect(window.isolation == nil && window.unsettled == 0)
    }

    /// Withdrawn suspects leave the isolation with their batch.
    @Test func withdrawnSuspectsLeaveTheIsolation() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10)
        let (mine, _) = window.enqueue(batch(["a", "b"]), now: t0)
        _ = window.enqueue(batch(["x"]), now: t0)
        _ = window.takeForSending(now: t0)
        _ = window.streamLost(blame: "INVALID_ARGUMENT")
        #expect(window.isolation == DeliveryWindow.Isolation(suspects: 3, groupSize: 1))
        #expect(window.withdraw([mine]) == 2)
        #expect(window.isolation == DeliveryWindow.Isolation(suspects: 1, groupSize: 1))
        #expect(try sentIDs(window.takeForSending(now: t0)) == ["x"])
    }
}

/// Whose fault a call's end is, from its gRPC status and message (issue 27): only a status about the log itself
/// blames it; an engine failing, overloaded or refusing the credentials is the destination's.
@Suite struct CallEndBlameTests {
    @Test(arguments: [
        (3, "log 1 refused: it contains \"POISON\""),
        (8, "grpc: received message larger than max (5243000 vs. 4194304)"),
        (8, "grpc: received message after decompression larger than max 4194304"),
        (8, "Message too large"),
        (13, "grpc: failed to unmarshal the received message: proto: cannot parse invalid wire-format data"),
    ])
    func aStatusAboutTheLogBlamesIt(_ code: Int, _ message: String) {
        #expect(CallEndBlame.of(status: code, message: message) == .theLog)
    }

    @Test(arguments: [
        (13, "internal error"), (13, nil), (2, "the handler failed"), (2, nil), (8, "too many requests, try again later"),
        (8, nil), (14, "connection refused"), (4, "deadline exceeded"), (1, "canceled"), (16, "bad connection key"),
        (7, "denied"), (12, "unknown method"), (9, "not ready"), (11, "out of range"), (15, "data loss"), (10, "aborted"),
    ] as [(Int, String?)])
    func anyOtherStatusBlamesTheDestination(_ code: Int, _ message: String?) {
        #expect(CallEndBlame.of(status: code, message: message) == .theDestination)
    }

    @Test func anEndWithoutAStatusBlamesTheDestination() {
        #expect(CallEndBlame.of(status: nil, message: nil) == .theDestination)
        #expect(EngineStreamError(description: "lost").blame == .theDestination)
        #expect(EngineStreamError.status("3", message: "bad").blame == .theLog)
        #expect(EngineStreamError.status("13", message: "internal error").blame == .theDestination)
    }
}
