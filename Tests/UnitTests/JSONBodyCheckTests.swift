import Testing

@testable import AdminAPI

@Suite struct JSONBodyCheckTests {
    func problem(_ text: String) -> JSONBodyCheck.Problem? { JSONBodyCheck.firstProblem(in: Array(text.utf8)) }

    @Test func wellFormedBodiesPass() {
        #expect(problem(#"{"a": 1, "b": [true, false, "x", {"c": -1.5e3}], "d": {}, "e": []}"#) == nil)
        #expect(problem(#"{"a": "quote \" and \\ and \u00e9", "b": "\ud83d\ude00"}"#) == nil)
        #expect(problem(#"{"a": {"x": 1}, "b": {"x": 2}}"#) == nil, "the same key in two objects is fine")
    }

    @Test func nullIsFoundWithItsPath() {
        #expect(problem(#"{"a": null}"#) == .null(path: "a"))
        #expect(problem(#"{"a": {"b": [1, null]}}"#) == .null(path: "a.b[1]"))
        #expect(problem("null") == .null(path: ""))
    }

    @Test func duplicateKeysAreFoundAfterUnescaping() {
        #expect(problem(#"{"name": "A", "name": "B"}"#) == .duplicateKey(path: "name"))
        #expect(problem(#"{"name": "A", "n\u0061me": "B"}"#) == .duplicateKey(path: "name"))
        #expect(problem(#"{"x": {"k": 1, "k": 2}}"#) == .duplicateKey(path: "x.k"))
        #expect(problem(#"{"x": [{"k": 1, "\u006b": 2}]}"#) == .duplicateKey(path: "x[0].k"))
        #expect(problem(#"{"\ud83d\ude00": 1, "😀": 2}"#) == .duplicateKey(path: "😀"), "a surrogate pair is its character")
    }

    @Test func whatTheScannerCannotReadIsMalformed() {
        for text in [
            "{", #"{"a" 1}"#, #"{"a": tru}"#, #"{"a": "\x"}"#, "[1,", "", #"{"a": "unterminated}"#, #"{"a": 1} x"#,
            "\u{FEFF}{\"a\": 1}",
        ] {
            #expect(problem(text) == .malformed, "\(text)")
        }
        let utf16 = Array(#"{"a": 1}"#.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(JSONBodyCheck.firstProblem(in: utf16) == .malformed, "UTF-16 is not read as JSON")
        let deep = String(repeating: "[", count: 10_000) + "null" + String(repeating: "]", count: 10_000)
        #expect(problem(deep) == .malformed, "no stack exhaustion")
    }
}
