import Foundation

/// The settings as `--help` and docs/configuration.md show them, from their one declaration.
extension Setting {
    /// `default 60` or what happens when unset.
    var shownDefault: String {
        guard let defaultValue else { return whenUnset ?? "unset" }
        return "default \(defaultValue)" + (mebibytes.map { " (\($0))" } ?? "")
    }

    /// A default in bytes, in MiB.
    var mebibytes: String? {
        guard accepted == "bytes", let bytes = defaultNumber, bytes >= 1 << 20, bytes % (1 << 20) == 0 else { return nil }
        return "\(bytes >> 20) MiB"
    }

    /// The text of `--help`: the settings of `command`, two lines each.
    public static func help(for command: SettingsCommand) -> String {
        precondition(command != .tenants, "the tenants commands describe their two settings themselves")
        var lines = wrapped(
            "Settings: a flag, an environment variable, or a key of the --config-file (YAML or JSON); the flag wins, then the environment, then the file. Give secrets by the environment or the file: other users of the machine can read command lines.",
            indent: 0, width: 79)
        for setting in all where setting.commands.contains(command) {
            lines.append("  \(setting.flag) <\(setting.accepted)>\(setting.isSecret ? " (secret)" : "")")
            lines += wrapped("\(setting.variable), \(setting.shownDefault): \(setting.meaning).", indent: 6, width: 79)
        }
        return lines.joined(separator: "\n")
    }

    /// `text` in lines of at most `width` characters (ArgumentParser would wrap longer ones without the indent).
    static func wrapped(_ text: String, indent: Int, width: Int) -> [String] {
        let margin = String(repeating: " ", count: indent)
        var lines: [String] = []
        var line = margin
        for word in text.split(separator: " ") {
            if line.count > indent, line.count + 1 + word.count > width {
                lines.append(line)
                line = margin
            }
            line += (line.count > indent ? " " : "") + word
        }
        return lines + [line]
    }

    /// The table of docs/configuration.md (a test checks that the file holds exactly this).
    public static var markdownTable: String {
        func cell(_ text: String) -> String { text.replacingOccurrences(of: "|", with: "\\|") }
        var lines = [
            "| variable | flag | file key | unit or form | meaning | default |",
            "|---|---|---|---|---|---|",
        ]
        for setting in all {
            let range: String
            if case .number(let bounds) = setting.form { range = ", \(bounds.lowerBound) to \(bounds.upperBound)" } else { range = "" }
            let defaultCell: String
            if let defaultValue = setting.defaultValue {
                defaultCell = "`\(defaultValue)`" + (setting.mebibytes.map { " (\($0))" } ?? "")
            } else {
                defaultCell = setting.whenUnset ?? "unset"
            }
            let fileKey = setting.commands == [.tenants] || setting == .configFile ? "" : "`\(setting.key)`"
            lines.append(
                "| `\(setting.variable)` | `\(setting.flag)` | \(fileKey) | \(cell(setting.accepted + range))\(setting.isSecret ? ", secret" : "") | \(cell(setting.meaning)) | \(defaultCell) |")
        }
        return lines.joined(separator: "\n")
    }
}
