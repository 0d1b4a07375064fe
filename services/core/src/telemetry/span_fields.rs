//! Span fields for the JSON log format, kept as a JSON object that later fields are appended to.
//!
//! tracing-subscriber's own `JsonFields` formats a span's fields when the span is created, then
//! parses that JSON and writes it out again for every field recorded later. Every HTTP request has
//! a root span that gets three fields recorded after its creation (status, outcome, org), so with
//! logs at `info` each request would pay for three parse/serialise round trips and a map per
//! round, even though almost no request logs anything. Here a later field is appended before the
//! closing brace instead. A field recorded twice appears twice; the JSON event formatter reads the
//! object into a map, where the later value wins, as with `JsonFields`.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

/// The span field formatter of the JSON log layer (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanJsonFields;

impl<'writer> FormatFields<'writer> for SpanJsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        writer.write_char('{')?;
        let mut visitor = Members::new(&mut writer, false);
        fields.record(&mut visitor);
        visitor.result?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let object = &mut current.fields;
        // What `format_fields` wrote: `{}` or `{"a":1,...}`. Anything else (never written here)
        // starts over rather than produce a string the event formatter cannot read.
        let has_members = if object.len() >= 2 && object.starts_with('{') && object.ends_with('}') {
            object.pop();
            object.len() > 1
        } else {
            object.clear();
            object.push('{');
            false
        };
        let mut visitor = Members::new(object, has_members);
        fields.record(&mut visitor);
        let result = visitor.result;
        object.push('}');
        result
    }
}

/// Writes each visited field as a `"name":value` member of a JSON object.
struct Members<'a, W: Write> {
    out: &'a mut W,
    needs_comma: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Members<'a, W> {
    fn new(out: &'a mut W, needs_comma: bool) -> Self {
        Self {
            out,
            needs_comma,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if self.needs_comma {
                self.out.write_char(',')?;
            }
            self.needs_comma = true;
            write_json_string(self.out, |s| s.write_str(name))?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| write_json_string(out, |s| write!(s, "{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_json_string(out, |s| s.write_str(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities: those are written as strings, as serde_json's `Value`
        // would not hold them either.
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value}"));
        } else {
            self.member(field, |out| write_json_string(out, |s| write!(s, "{value}")));
        }
    }
}

/// Writes what `content` writes as one JSON string: quoted, with `"`, `\` and control characters
/// escaped, without building the unescaped text first.
fn write_json_string<W: Write>(
    out: &mut W,
    content: impl FnOnce(&mut Escaping<'_, W>) -> fmt::Result,
) -> fmt::Result {
    out.write_char('"')?;
    content(&mut Escaping(out))?;
    out.write_char('"')
}

struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain_from = 0;
        for (i, c) in s.char_indices() {
            let escaped = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if (c as u32) < 0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[plain_from..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain_from = i + c.len_utf8();
        }
        self.0.write_str(&s[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use crate::telemetry::json_log_layer;

    /// Collects what the JSON layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged_lines(body: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        // The layer the services log with.
        let layer = json_log_layer(move || sink.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, body);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn a_log_line_carries_the_span_fields_including_those_recorded_later() {
        let lines = logged_lines(|| {
            let span = tracing::info_span!(
                "HTTP request",
                http.route = "/{org}/{endpoint}/mcp",
                http.user_agent = %"quote \" backslash \\ newline \n bell \u{7} ünïcode",
                http.status_code = tracing::field::Empty,
                org_id = tracing::field::Empty,
                ratio = 0.5,
                odd = f64::NAN,
            );
            let _entered = span.enter();
            tracing::info!(kind = "first", "before");
            span.record("http.status_code", 403);
            span.record("org_id", "org-1");
            span.record("org_id", "org-2");
            tracing::warn!(kind = "second", "after");
        });
        assert_eq!(lines.len(), 2);
        let before = &lines[0]["span"];
        assert_eq!(before["name"], "HTTP request");
        assert_eq!(before["http.route"], "/{org}/{endpoint}/mcp");
        assert_eq!(
            before["http.user_agent"],
            "quote \" backslash \\ newline \n bell \u{7} ünïcode"
        );
        assert_eq!(before["ratio"], 0.5);
        assert_eq!(before["odd"], "NaN");
        assert!(before.get("http.status_code").is_none());
        let after = &lines[1]["span"];
        assert_eq!(after["http.status_code"], 403);
        assert_eq!(after["org_id"], "org-2", "the value recorded last wins");
        assert_eq!(after["http.route"], "/{org}/{endpoint}/mcp");
        assert_eq!(lines[1]["kind"], "second");
    }

    #[test]
    fn a_span_without_fields_is_an_empty_object_until_one_is_recorded() {
        let lines = logged_lines(|| {
            let span = tracing::info_span!("bare", later = tracing::field::Empty);
            let _entered = span.enter();
            tracing::info!("no fields yet");
            span.record("later", true);
            tracing::info!("one field");
        });
        assert_eq!(lines[0]["span"], serde_json::json!({"name": "bare"}));
        assert_eq!(
            lines[1]["span"],
            serde_json::json!({"name": "bare", "later": true})
        );
    }
}
