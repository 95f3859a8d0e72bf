/// What the client does with an Activity API answer. A pure decision table (reference §5.1, §7).
public enum ResponseAction: Sendable, Equatable {
    case success
    /// Throttled (AF429 in a 403 or a 429): wait `retryAfter` when Microsoft gave one, else back off.
    case throttled(retryAfterSeconds: Int?)
    /// A transient fault (5xx, AF50000, AF50005, AF50006, 408, a 404 without an AF code): back off and retry.
    case retry
    /// The token was refused: fetch one fresh token and retry once.
    case reauthenticate
    /// No subscription or a disabled one while listing content: start it, then retry.
    case startSubscription
    /// Microsoft says the blob is gone, expired or its id malformed (AF20050, AF20051, AF20052): skip it and count
    /// it. Nothing else skips a blob: a plain 404 comes from a front end or proxy as often as from the API.
    case skipBlob(reason: String)
    /// The `nextPage` token was refused (AF20031): list the window again from its start.
    case restartWindow
    case fail(MicrosoftError)
}

public enum RequestKind: String, Sendable, Equatable, CaseIterable {
    case listSubscriptions, startSubscription, listContent, fetchBlob
}

public enum ResponsePolicy {
    public static func decide(status: Int, afCode: String?, retryAfterSeconds: Int?, kind: RequestKind) -> ResponseAction {
        if (200..<300).contains(status) { return .success }
        if afCode == "AF429" || status == 429 { return .throttled(retryAfterSeconds: retryAfterSeconds) }
        if let afCode {
            // ("already enabled, no property change" is what a start wants)
            if afCode == "AF20024" && kind == .startSubscription { return .success }
            if afCode == "AF10001" { return .fail(.fromAPIError(afCode: afCode, httpStatus: status)) }
            if ["AF20022", "AF20023"].contains(afCode) && kind == .listContent { return .startSubscription }
            if ["AF20050", "AF20051", "AF20052"].contains(afCode) && kind == .fetchBlob { return .skipBlob(reason: afCode) }
            if afCode == "AF20031" && kind == .listContent { return .restartWindow }
            if ["AF50000", "AF50005", "AF50006"].contains(afCode) { return .retry }
        }
        if status == 401 { return .reauthenticate }
        // A 404 without an AF code is not Microsoft saying "gone" (`{"Message": "No HTTP resource was found ..."}`
        // is what a front end answers during a deployment): retried, never skipped.
        if (status == 404 && afCode == nil) || status >= 500 || status == 408 { return .retry }
        return .fail(.fromAPIError(afCode: afCode, httpStatus: status))
    }
}
