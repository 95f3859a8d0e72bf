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

    @Test func aSaturatedWindowWakesTheWriterOnlyForAQuarterOfItsRoom() {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 8)
        _ = window.enqueue(batch((0..<20).map(String.init)))
        #expect(window.takeForSending().count == 8)
        #expect(!window.worthSending, "full window")
        _ = window.acknowledge("0")
        #expect(!window.worthSending, "one free slot is not worth a write")
        _ = window.acknowledge("1")
        #expect(window.worthSending, "a quarter free")
        #expect(window.takeForSending().count == 2)
        for id in 2..<10 { _ = window.acknowledge(String(id)) }
        #expect(window.worthSending)
        #expect(window.takeForSending().count == 8)
        for id in 10..<18 { _ = window.acknowledge(String(id)) }
        #expect(window.takeForSending().count == 2)
        for id in 18..<20 { _ = window.acknowledge(String(id)) }
        #expect(!window.worthSending, "nothing waits")
    }

    @Test func acknowledgementsAreCumulativeAndCompleteBatchesInOrder() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 10)
        let (b1, _) = window.enqueue(batch(["a", "b"]))
        let (b2, _) = window.enqueue(batch(["c"]))
        let outgoing = window.takeForSending()
        #expect(try sentIDs(outgoing) == ["a", "b", "c"])
        #expect(outgoing.chunks.count == 2, "one slice per batch")
        let first = window.acknowledge("a")
        #expect(first.delivered == 1 && first.completedBatches.isEmpty)
        #expect(first.freedBytes < batch(["a"]).byteCost, "a log's own bytes; its batch's slack goes with the batch")
        let ack = window.acknowledge("c")
        #expect(ack.delivered == 2 && ack.completedBatches == [b1, b2])
        #expect(window.isIdle && window.heldBytes == 0)
        #expect(window.acknowledge("c").delivered == 0, "a repeated ack delivers nothing")
    }

    @Test func aLostStreamResendsInOriginalOrder() throws {
        var window = DeliveryWindow(byteBudget: 1 << 20, maxInFlight: 2)
        _ = window.enqueue(batch(["a", "b", "c", "d"]))
        #expect(try sentIDs(window.takeForSending()) == ["a", "b"])
        #expect(window.takeForSending().chunks.isEmpty, "window full")
        _ = window.acknowledge("a")
        #expect(try sentIDs(window.takeForSending()) == ["c"])
        #expect(window.streamLost() == 2)
        #expect(try sentIDs(window.takeForSending()) == ["b", "c"])
        _ = window.acknowledge("c")
        #expect(try sentIDs(window.takeForSending()) == ["d"])
        #expect(window.acknowledge("d").completedBatches == [1])
    }

    @Test func theByteBudgetBoundsWhatIsHeld() {
        var window = DeliveryWindow(byteBudget: 1000, maxInFlight: 100)
        let three = batch(["a", "b", "c"], size: 200)
        #expect(window.canAdmit(bytes: three.byteCost))
        _ = window.enqueue(three)
        #expect(!window.canAdmit(bytes: three.byteCost), "a second batch would exceed the budget")
        _ = window.takeForSending()
        _ = window.acknowledge("c")
        #expect(window.canAdmit(bytes: three.byteCost))
        let huge = batch(["h"], size: 5000)
        #expect(window.canAdmit(bytes: huge.byteCost), "an oversized batch is admitted when nothing is held")
        _ = window.enqueue(huge)
        #expect(!window.canAdmit(bytes: 1))
        #expect(window.highWaterBytes == huge.byteCost)
    }
}
