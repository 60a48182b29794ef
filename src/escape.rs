//! Names are data. Every string that comes from an input file (node, tensor, graph and layer
//! names, paths) and reaches generated text goes through the one function here for that text's
//! language, so that no file can put code, markup or rows of its own into what qsearch writes:
//!
//! | output | function |
//! |---|---|
//! | C identifier (array and struct names) | [`c_identifier`] |
//! | C string literal (`network_layer_names`) | [`c_string_literal`] |
//! | C comment | [`c_comment`] |
//! | shell word (sbatch scripts) | [`shell_word`] |
//! | CSV field written by hand (sensitivity tables) | [`csv_field`]; read back with [`csv_records`] |
//! | SVG/PNG plot text (plotters escapes markup itself) | [`plot_text`] |
//! | terminal and text reports | [`terminal_text`] |
//! | Markdown report | [`markdown_code_block`] |
//!
//! polars writes the CSV of results frames with its own quoting; ONNX and JSON files are
//! written by their serializers.

/// A C identifier made of the first ASCII letters and digits of `name` (others become `_`),
/// for readable generated code; callers prefix it with an index, so two names that map alike
/// stay distinct.
pub(crate) fn c_identifier(name: &str) -> String {
    const KEPT: usize = 32;
    let mut s: String = name
        .chars()
        .take(KEPT)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// Longest string literal a C99 compiler must accept (ISO C99 5.2.4.1: 4095 characters); a
/// longer text is cut (on a character boundary) and ends with `...`.
const C_LITERAL_MAX: usize = 4000;

/// `text` as a quoted C string literal whose value is `text`'s UTF-8 bytes: printable ASCII
/// stays, `"` `\` and `?` (trigraphs) are escaped, every other byte is a three-digit octal
/// escape (never hex, which would swallow following hex digits).
pub(crate) fn c_string_literal(text: &str) -> String {
    let text = shortened(text, C_LITERAL_MAX);
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for &b in text.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'?' => out.push_str("\\?"),
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// `text` made safe inside a C block comment `/* ... */`: on one line, printable ASCII only
/// (others as `\u{..}`), and no `*/` or `/*` (which would end the comment or trip -Wcomment).
pub(crate) fn c_comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' if out.ends_with('*') => out.push_str(" /"),
            '*' if out.ends_with('/') => out.push_str(" *"),
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

/// `text` as one POSIX shell word: single-quoted, with each `'` written as `'\''`.
pub(crate) fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` as one CSV field (RFC 4180): quoted when it holds a comma, a quote, a line break or
/// surrounding blanks, with quotes doubled.
pub(crate) fn csv_field(text: &str) -> String {
    let needs_quotes = text.contains([',', '"', '\n', '\r']) || text.trim() != text;
    if needs_quotes {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The records of a CSV text (RFC 4180 quoting, as [`csv_field`] writes it), each with the
/// 1-based line it starts on; blank lines are skipped and unquoted fields trimmed. An
/// unterminated quote is an error naming its line.
pub(crate) fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => break,
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some('"') if field.trim().is_empty() && !quoted => {
                    quoted = true;
                    field.clear();
                    loop {
                        match chars.next() {
                            None => return Err(format!("line {start}: a quoted field never ends")),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                }
                Some(',') => {
                    fields.push(finish(&mut field, &mut quoted));
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(c) if quoted => {
                    if !c.is_whitespace() {
                        return Err(format!(
                            "line {start}: '{c}' after a quoted field; fields are separated by ','"
                        ));
                    }
                }
                Some(c) => field.push(c),
            }
        }
        fields.push(finish(&mut field, &mut quoted));
        if !(fields.len() == 1 && fields[0].is_empty() && !quoted) {
            records.push((start, fields));
        }
    }
    Ok(records)
}

fn finish(field: &mut String, quoted: &mut bool) -> String {
    let text = std::mem::take(field);
    let done = if *quoted {
        text
    } else {
        text.trim().to_string()
    };
    *quoted = false;
    done
}

/// Text for a plot (title, legend, labels): control characters, which XML cannot carry, are
/// written as `\u{..}`; plotters escapes `<`, `&` and quotes itself.
pub(crate) fn plot_text(text: &str) -> String {
    terminal_text(text)
}

/// Text for the terminal and text reports: control characters (line breaks, escape sequences
/// that would move the cursor or recolour the terminal) are written as `\u{..}`.
pub(crate) fn terminal_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` as a Markdown fenced code block that nothing inside can close or turn into markup:
/// the fence is longer than any run of backticks in `text`.
pub(crate) fn markdown_code_block(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{}\n{fence}\n", text.trim_end_matches('\n'))
}

/// The first `max` bytes of `text`, cut on a character boundary, with `...` when cut.
fn shortened(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "c1 */ int x = 42; /* \"x\\\" ??/\n$(touch pwned) `id` <script>é\u{1b}[2J";

    #[test]
    fn c_literals_keep_every_byte_as_data() {
        let lit = c_string_literal(HOSTILE);
        assert!(lit.starts_with('"') && lit.ends_with('"'));
        let inner = &lit[1..lit.len() - 1];
        // No unescaped quote, no raw newline, no trigraph.
        assert!(!inner.replace("\\\\", "").replace("\\\"", "").contains('"'));
        assert!(!inner.contains('\n') && !inner.contains("??"));
        assert!(lit.contains("\\303\\251"), "é as its UTF-8 bytes: {lit}");
        assert_eq!(c_string_literal(&"a".repeat(5000)).len(), C_LITERAL_MAX + 5);
    }

    #[test]
    fn c_comments_cannot_close_or_nest() {
        let c = c_comment(HOSTILE);
        assert!(!c.contains("*/") && !c.contains("/*") && !c.contains('\n'));
        assert_eq!(c_comment("a*/b/*c"), "a* /b/ *c");
        assert_eq!(c_comment("*/*/"), "* / * /");
    }

    #[test]
    fn identifiers_are_alphanumeric() {
        assert_eq!(c_identifier("conv 1/2"), "conv_1_2");
        assert_eq!(c_identifier("1x"), "_1x");
        assert_eq!(c_identifier(""), "_");
    }

    #[test]
    fn shell_words_survive_sh() {
        let word = shell_word("it's $(x) `y` \"z\"");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "it's $(x) `y` \"z\""
        );
    }

    #[test]
    fn csv_fields_round_trip() {
        let names = [HOSTILE, "plain", " padded ", "a,b", "", "\"q\""];
        let text: String = names
            .iter()
            .map(|n| format!("{},1\n", csv_field(n)))
            .collect();
        let records = csv_records(&text).unwrap();
        let back: Vec<&str> = records.iter().map(|(_, f)| f[0].as_str()).collect();
        assert_eq!(back, names);
        assert_eq!(records[1].0, 3, "a quoted line break counts as a line");
        assert!(csv_records("\"open,1\n").unwrap_err().contains("line 1"));
        assert!(csv_records("\"a\"b,1").is_err());
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        let t = terminal_text(HOSTILE);
        assert!(!t.chars().any(char::is_control));
        assert!(t.contains("\\u{a}") && t.contains("\\u{1b}") && t.contains('é'));
    }

    #[test]
    fn markdown_fence_outlasts_backticks() {
        let block = markdown_code_block("a ```` b\n");
        assert!(block.starts_with("`````text\n") && block.ends_with("\n`````\n"));
    }
}
