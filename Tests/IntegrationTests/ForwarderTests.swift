import Foundation
import GatewayCore
import Testing
import UTMStackForwarder
import UTMStackProtocol
import UTMStackReceiver
import ServiceLifecycle

@Suite(.timeLimit(.minutes(2))) struct ForwarderTests {
    @Test func acknowledgedLogsArriveInOrderWithTheirFieldsIntact() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: true)
        let logs = syntheticLogs(0..<1000)
        try await withReceiver(path: path, received: received) {
            try await withForwarder(.init(endpoint: .engineSocket(path: path))) { forwarder in
                var tickets: [DeliveryTicket] = []
                for start in stride(from: 0, to: logs.count, by: 100) {
                    tickets.append(try await forwarder.submit(Array(logs[start..<start + 100])))
                }
                for ticket in tickets { try await forwarder.waitDelivered(ticket) }
                #expect(await forwarder.heldBytes.now == 0)
            }
        }
        let got = received.snapshot.logs
        #expect(got.count == logs.count)
        #expect(got.map(\.id) == logs.map(\.id))
        for (log, sent) in zip(got, logs) {
            #expect(Array(log.raw.utf8) == Array(sent.raw.utf8))
            #expect(log.dataType == "o365" && log.tenantID == "utm-tenant" && log.dataSource == "Contoso")
            #expect(log.timestamp == "2026-11-01T10:00:00Z")
        }
    }

    @Test func anEngineRestartMidStreamLosesNothing() async throws {
        let path = temporarySocketPath()
        let first = ReceivedLogs(keepLogs: true)
        let second = ReceivedLogs(keepLogs: true)
        let logs = syntheticLogs(0..<3000)
        let configuration = ForwarderConfiguration(
            endpoint: .engineSocket(path: path), initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(200))
        try await withForwarder(configuration) { forwarder in
            // The engine acknowledges slowly, then crashes with logs in flight.
            let tickets = try await withReceiver(path: path, received: first, ackDelay: .microseconds(300)) {
                var tickets: [DeliveryTicket] = []
                for start in stride(from: 0, to: logs.count, by: 50) {
                    tickets.append(try await forwarder.submit(Array(logs[start..<start + 50])))
                }
                #expect(try await eventually { first.total >= 300 })
                return tickets
            }
            #expect(first.total < logs.count, "the crash must happen mid-stream")
            // While the engine is down, nothing is delivered and the forwarder keeps retrying.
            try await Task.sleep(for: .milliseconds(300))
            try await withReceiver(path: path, received: second) {
                for ticket in tickets { try await forwarder.waitDelivered(ticket) }
            }
        }
        let ids = Set(first.snapshot.logs.map(\.id) + second.snapshot.logs.map(\.id))
        #expect(ids == Set(logs.map(\.id)), "every log reached an engine")
        // After the restart the second engine gets a contiguous tail of the logs, in the original order.
        let secondIDs = second.snapshot.logs.map(\.id)
        let inOrder = secondIDs == Array(logs.map(\.id).suffix(secondIDs.count))
        #expect(inOrder)
        #expect(secondIDs.count < logs.count)
    }

    @Test func theForwarderWaitsForAMissingSocket() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let configuration = ForwarderConfiguration(
            endpoint: .engineSocket(path: path), initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100))
        try await withForwarder(configuration) { forwarder in
            let ticket = try await forwarder.submit(syntheticLogs(0..<10))
            try await Task.sleep(for: .milliseconds(300))
            #expect(received.total == 0)
            try await withReceiver(path: path, received: received) {
                try await forwarder.waitDelivered(ticket)
            }
        }
        #expect(received.total == 10)
    }

    /// It connects when it has something to deliver: a gateway started before its engine (or with nothing to
    /// collect yet) reports no outage.
    /// A retired forwarder (its destination changed or was deleted) drains what it took but takes no new batch:
    /// a poll that got it before the change cannot send to the destination as it was.
    @Test func aRetiredForwarderTakesNoNewBatch() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let forwarder = UTMStackForwarder(
            configuration: .init(destination: "eu", endpoint: .engineSocket(path: path)), deadLetters: MemoryDeadLetterStore(),
            logger: quietLogger)
        try await withReceiver(path: path, received: received) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await forwarder.run() }
                let taken = try await forwarder.submit(syntheticLogs(0..<5))
                forwarder.retire()
                await #expect(throws: GatewayError.destinationChanged("eu")) { try await forwarder.submit(syntheticLogs(5..<10)) }
                try await forwarder.waitDelivered(taken)
                try await group.waitForAll()
            }
        }
        #expect(received.total == 5, "what it took before it was retired was delivered, nothing after")
    }

    @Test func anIdleForwarderDoesNotConnect() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let capture = LogCapture()
        let forwarder = UTMStackForwarder(
            configuration: .init(endpoint: .engineSocket(path: path), initialBackoff: .milliseconds(20)),
            deadLetters: MemoryDeadLetterStore(), logger: capture.logger())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await forwarder.run() }
            defer { group.cancelAll() }
            try await Task.sleep(for: .milliseconds(300))
            #expect(!capture.text.contains("UTMStack stream failed"), "idle and the socket missing: no attempt")
            try await withReceiver(path: path, received: received) {
                try await forwarder.deliver(syntheticLogs(0..<5))
                #expect(!capture.text.contains("UTMStack stream failed"), "connected at the first try")
            }
        }
        #expect(received.total == 5)
    }

    @Test func slowAcknowledgementsApplyBackpressureWithinTheByteBudget() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let budget = 64 * 1024
        let logs = syntheticLogs(0..<1500, rawSize: 1000)
        let configuration = ForwarderConfiguration(
            endpoint: .engineSocket(path: path), inFlightByteBudget: budget, maxInFlightLogs: 64)
        let (highWater, waited) = try await withReceiver(path: path, received: received, ackDelay: .microseconds(500)) {
            try await withForwarder(configuration) { forwarder in
                var tickets: [DeliveryTicket] = []
                var waited = 0
                for start in stride(from: 0, to: logs.count, by: 10) {
                    let before = ContinuousClock.now
                    tickets.append(try await forwarder.submit(Array(logs[start..<start + 10])))
                    if ContinuousClock.now - before > .milliseconds(1) { waited += 1 }
                    #expect(await forwarder.heldBytes.now <= budget)
                }
                for ticket in tickets { try await forwarder.waitDelivered(ticket) }
                return (await forwarder.heldBytes.highWater, waited)
            }
        }
        #expect(received.total == logs.count)
        #expect(highWater <= budget)
        #expect(highWater > budget / 2, "the budget was used")
        #expect(waited > 10, "submitters were made to wait")
    }

    @Test func problemsAreNotifiedOnceWithTenantAndAdvice() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let tenant = TenantID()
        try await withReceiver(path: path, received: received) {
            let notifier = EngineNotifier(endpoint: .engineSocket(path: path), logger: quietLogger)
            let problem = IntegrationProblem(
                tenant: tenant, tenantName: "Contoso", code: "secret_expired",
                advice: "Create a new client secret and PUT it to /api/v1/tenants/{id}/secret.")
            await notifier.report(problem)
            await notifier.report(problem)
        }
        let messages = received.snapshot.messages
        #expect(messages.count == 1)
        let message = try #require(messages.first)
        #expect(message.topic == "integration_failure")
        let body = try #require(try JSONSerialization.jsonObject(with: Data(message.message.utf8)) as? [String: String])
        #expect(body["tenantId"] == "\(tenant)" && body["tenantName"] == "Contoso" && body["code"] == "secret_expired")
        #expect(body["advice"]?.contains("client secret") == true)
    }
}

@Suite(.timeLimit(.minutes(2))) struct ForwarderShutdownTests {
    /// Graceful shutdown waits until everything submitted is acknowledged, then returns promptly.
    @Test func gracefulShutdownDrainsOutstandingLogs() async throws {
        let path = temporarySocketPath()
        let received = ReceivedLogs(keepLogs: false)
        let logs = syntheticLogs(0..<500)
        try await withReceiver(path: path, received: received, ackDelay: .milliseconds(1)) {
            let forwarder = UTMStackForwarder(
                configuration: .init(endpoint: .engineSocket(path: path), drainTimeout: .seconds(30)),
                deadLetters: MemoryDeadLetterStore(), logger: quietLogger)
            let group = ServiceGroup(services: [forwarder], logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let ticket = try await forwarder.submit(logs)
                #expect(received.total < logs.count, "shutdown starts with logs outstanding")
                let started = ContinuousClock.now
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                #expect(ContinuousClock.now - started < .seconds(10))
                try await forwarder.waitDelivered(ticket)
            }
        }
        #expect(received.total == logs.count)
    }
}
